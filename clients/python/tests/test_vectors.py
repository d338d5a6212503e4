"""Every field of the published vectors (vectors/*.json) recomputed with the library's
protocol core: keys, transcript, confirmation, signature, AADs and envelopes."""

from __future__ import annotations

import json
import pathlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from session_crypto import protocol as p
from session_crypto.errors import ProtocolError

VECTORS = pathlib.Path(__file__).resolve().parents[3] / "vectors"
V1 = json.loads((VECTORS / "reference-v1.json").read_text())
V2 = json.loads((VECTORS / "protocol-v2.json").read_text())
EX = json.loads((VECTORS / "exchanges.json").read_text())


def key(scalar_hex: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int(scalar_hex, 16), ec.SECP256R1())


def h(x: str) -> bytes:
    return bytes.fromhex(x)


def split_key(k: str) -> tuple[str, str]:
    ts, nonce = k.split(".", 1)
    return ts, nonce


def test_v1_session_key_and_envelopes() -> None:
    client = key(V1["client_private_scalar"])
    assert p.b64encode(p.raw_public(client)) == V1["client_public_key_b64"]
    z = p.shared_secret(client, p.b64decode(V1["server_public_key_b64"]))
    assert z.hex() == V1["shared_secret"]
    s = p.v1_keys(z, V1["session_id_ascii"], V1["client_id_ascii"], 1800)
    assert s.request_key.hex() == V1["session_key"]
    assert s.kid == V1["request"]["x_kid_ascii"]
    for part in ("request", "response"):
        v = V1[part]
        ts, nonce = split_key(v["x_idempotency_key_ascii"])
        aad = p.request_aad(s, p.RequestLine("POST", "/transaction/purchase"), ts, nonce)
        assert aad.decode() == v["aad_ascii"]
        sealed = p.seal(s.request_key, aad, v["plaintext_ascii"].encode(), h(v["iv"]))
        assert sealed.hex() == v["envelope"]
        assert p.open_envelope(s.response_key, aad, sealed).decode() == v["plaintext_ascii"]


def v2_session(pins: list[ec.EllipticCurvePublicKey]) -> p.SessionKeys:
    client = key(V2["client_private_scalar"])
    answer = json.loads(V2["init_response_ascii"])
    return p.session_from_answer(client, answer, V2["client_id_ascii"], 2, pins)


def test_v2_schedule_confirmation_and_signature() -> None:
    client = key(V2["client_private_scalar"])
    assert p.b64encode(p.raw_public(client)) == V2["client_public_key_b64"]
    server_public = p.b64decode(V2["server_public_key_b64"])
    assert p.shared_secret(client, server_public).hex() == V2["shared_secret"]
    th = p.transcript_hash(V2["client_id_ascii"], V2["session_id_ascii"], p.raw_public(client), server_public)
    assert th.hex() == V2["transcript_hash"]
    assert p.fields("session-crypto/2 server signature", th).hex() == V2["signing"]["signature_input"]
    pin = p.import_pin(V2["signing"]["public_key_b64"])
    s = v2_session([pin])
    assert (s.request_key.hex(), s.response_key.hex()) == (V2["request_key"], V2["response_key"])
    assert s.session_id == V2["session_id_ascii"] and s.expires_in_sec == V2["expires_in_sec"]
    # A stranger's pin, or a changed answer: refused.
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(ProtocolError) as e:
        v2_session([stranger])
    assert e.value.reason == "signature"
    changed = json.loads(V2["init_response_ascii"])
    changed["expiresInSec"] = 86400
    with pytest.raises(ProtocolError) as e:
        p.session_from_answer(client, changed, V2["client_id_ascii"], 2, [])
    assert e.value.reason == "confirmation"
    downgraded = {k: v for k, v in json.loads(V2["init_response_ascii"]).items() if k != "protocol"}
    with pytest.raises(ProtocolError) as e:
        p.session_from_answer(client, downgraded, V2["client_id_ascii"], 2, [])
    assert e.value.reason == "format"


def test_v2_request_and_response() -> None:
    s = v2_session([])
    rq, rs = V2["request"], V2["response"]
    line = p.RequestLine(rq["method_ascii"], rq["target_ascii"], rq["inner_content_type_ascii"])
    ts, nonce = split_key(rq["x_idempotency_key_ascii"])
    aad = p.request_aad(s, line, ts, nonce)
    assert aad.hex() == rq["aad"]
    assert p.seal(s.request_key, aad, rq["plaintext_ascii"].encode(), h(rq["iv"])).hex() == rq["envelope"]
    rts, rnonce = split_key(rs["x_idempotency_key_ascii"])
    raad = p.response_aad(s, p.RequestLine(line.method, line.target, rs["inner_content_type_ascii"]), rts, rnonce, nonce, rs["status"])
    assert raad.hex() == rs["aad"]
    assert p.open_envelope(s.response_key, raad, h(rs["envelope"])).decode() == rs["plaintext_ascii"]
    # The request, sent back as its own answer, does not open under the response key.
    with pytest.raises(ProtocolError):
        p.open_envelope(s.response_key, raad, h(rq["envelope"]))


def test_exchange_vectors_gateway_refusal_and_v1_answer() -> None:
    s = v2_session([])
    for ex in EX["gateway"]:
        rq, rs = ex["request"], ex["response"]
        line = p.RequestLine(rq["method_ascii"], rq["target_ascii"], rq["inner_content_type_ascii"])
        ts, nonce = split_key(rq["x_idempotency_key_ascii"])
        call_key = rq.get("idempotency_key_header_ascii")
        aad = p.request_aad(s, line, ts, nonce, call_key)
        assert aad.hex() == rq["aad"], ex["name"]
        assert p.seal(s.request_key, aad, rq["plaintext_ascii"].encode(), h(rq["iv"])).hex() == rq["envelope"]
        rts, rnonce = split_key(rs["x_idempotency_key_ascii"])
        raad = p.response_aad(
            s, p.RequestLine(line.method, line.target, rs["inner_content_type_ascii"]), rts, rnonce, nonce, rs["status"]
        )
        assert raad.hex() == rs["aad"], ex["name"]
        assert p.open_envelope(s.response_key, raad, h(rs["envelope"])).decode() == rs["plaintext_ascii"]
    r = EX["v2_refusal"]
    rq = V2["request"]
    _, nonce = split_key(rq["x_idempotency_key_ascii"])
    rts, rnonce = split_key(r["x_idempotency_key_ascii"])
    line = p.RequestLine(rq["method_ascii"], rq["target_ascii"], "")
    aad = p.refusal_aad(s, line, rts, rnonce, nonce, r["status"])
    assert aad.hex() == r["aad"]
    assert json.loads(p.open_envelope(s.response_key, aad, h(r["envelope"])))["outcome"] == "not-executed"
    v1 = EX["v1_response"]
    s1 = p.v1_keys(h(V1["shared_secret"]), V1["session_id_ascii"], V1["client_id_ascii"], 1800)
    ts, nonce = split_key(v1["x_idempotency_key_ascii"])
    assert nonce.startswith("rsp_")
    aad = p.response_aad(s1, p.RequestLine("POST", "/transaction/purchase"), ts, nonce, "", 200)
    assert aad.decode() == v1["aad_ascii"]
    assert p.open_envelope(s1.response_key, aad, h(v1["envelope"]))


def test_pins_in_every_form() -> None:
    pin = p.import_pin(V2["signing"]["public_key_b64"])
    from cryptography.hazmat.primitives import serialization

    pem = pin.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    spki = p.b64encode(pin.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    nums = pin.public_numbers()
    import base64

    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": base64.urlsafe_b64encode(nums.x.to_bytes(32, "big")).rstrip(b"=").decode(),
        "y": base64.urlsafe_b64encode(nums.y.to_bytes(32, "big")).rstrip(b"=").decode(),
    }
    for form in (pem, spki, jwk, pem.encode()):
        assert p.import_pin(form).public_numbers() == nums
    from session_crypto.errors import ConfigurationError

    for bad in ("not a key!", "-----BEGIN PRIVATE KEY-----\nMIG\n-----END PRIVATE KEY-----", {"kty": "RSA"}):
        with pytest.raises(ConfigurationError):
            p.import_pin(bad)


def test_exchange_answers_through_the_clients_checks() -> None:
    """The recorded gateway answers, as the client reads them off the wire: the status
    (an X-Inner-Status one too), the inner content type, the body."""
    from session_crypto.calls import Attempt
    from session_crypto.core import Core

    s = v2_session([])
    for ex in EX["gateway"]:
        rq, rs = ex["request"], ex["response"]
        if "x_envelope_ascii" in rq:
            assert p.b64encode(h(rq["envelope"])) == rq["x_envelope_ascii"]
        core = Core.configure("http://127.0.0.1:1", V2["client_id_ascii"])
        ts, _ = split_key(rs["x_idempotency_key_ascii"])
        core.clock_offset_ms = int(ts) - __import__("time").time_ns() // 1_000_000
        core.auth_clock = True
        call = core.prepare(
            rq["method_ascii"], rq["target_ascii"],
            content=rq["plaintext_ascii"] or None if rq["method_ascii"] != "GET" else None,
            content_type=rq["inner_content_type_ascii"] or None,
        )
        _, nonce = split_key(rq["x_idempotency_key_ascii"])
        attempt = Attempt(rq["method_ascii"], call.url, {}, b"", nonce, 0, s)
        headers = {"X-Kid": s.kid, "X-Idempotency-Key": rs["x_idempotency_key_ascii"], "Content-Type": "application/octet-stream"}
        if rs["inner_content_type_ascii"]:
            headers["X-Inner-Content-Type"] = rs["inner_content_type_ascii"]
        if "x_inner_status_ascii" in rs:
            headers["X-Inner-Status"] = rs["x_inner_status_ascii"]
        opened = core.answer(call, attempt, rs["http_status"], headers, h(rs["envelope"]))
        assert (opened.status_code, opened.content.decode()) == (rs["status"], rs["plaintext_ascii"]), ex["name"]
        assert opened.headers.get("content-type", "") == rs["inner_content_type_ascii"]
