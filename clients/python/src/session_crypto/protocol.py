"""The protocol's client rules with no HTTP in them (docs/PROTOCOL.md): key agreement
and the v1 and v2 key schedules, key confirmation, the server signature and pinning,
the AADs, envelopes, and the header grammars."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Union

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigurationError, ProtocolError

SUITE = "P256-HKDF-SHA256-A256GCM"

#: A pinned server signing key: PEM, base64 (SPKI or raw point), or a JWK.
ServerKey = Union[str, bytes, Mapping[str, Any]]


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (§1)."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Standard base64, padding optional; ``ValueError`` on anything else."""
    if not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", text):
        raise ValueError("not base64")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def fields(*parts: Union[str, bytes]) -> bytes:
    """``lp(a, b, …)``: each field preceded by its length as two big-endian bytes."""
    out = bytearray()
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else p
        if len(b) > 0xFFFF:
            raise ValueError("a field is longer than 65535 bytes")
        out += len(b).to_bytes(2, "big") + b
    return bytes(out)


@dataclass(frozen=True)
class RequestLine:
    """What a v2 AAD binds of the request: method, target as sent, inner content type."""

    method: str
    target: str
    content_type: str = ""


@dataclass(frozen=True)
class SessionKeys:
    """A session's keys and identity (``request_key == response_key`` in v1)."""

    protocol: int
    session_id: str
    client_id: str
    request_key: bytes
    response_key: bytes
    expires_in_sec: int

    @property
    def kid(self) -> str:
        return f"session:{self.session_id}"

    def __repr__(self) -> str:  # never the keys
        return f"SessionKeys(protocol={self.protocol}, session_id={self.session_id[:6]}…)"


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def generate_key_pair() -> ec.EllipticCurvePrivateKey:
    """A fresh ephemeral P-256 key pair."""
    return ec.generate_private_key(ec.SECP256R1())


def raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The uncompressed point (65 bytes) of ``key``'s public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def shared_secret(private: ec.EllipticCurvePrivateKey, server_public: bytes) -> bytes:
    """ECDH ``Z`` with the server's uncompressed point."""
    if len(server_public) != 65 or server_public[0] != 4:
        raise ProtocolError("format", "serverPublicKey is not an uncompressed P-256 point")
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), server_public)
    except ValueError:
        raise ProtocolError("format", "serverPublicKey is not a point on P-256") from None
    return private.exchange(ec.ECDH(), peer)


def v1_keys(z: bytes, session_id: str, client_id: str, expires_in_sec: int) -> SessionKeys:
    """v1 (§10): one key, HKDF(Z, salt = session id, info = SESSION|A256GCM|client id)."""
    key = _hkdf(z, session_id.encode(), f"SESSION|A256GCM|{client_id}".encode())
    return SessionKeys(1, session_id, client_id, key, key, expires_in_sec)


def transcript_hash(
    client_id: str, session_id: str, client_public: bytes, server_public: bytes
) -> bytes:
    """The v2 transcript hash (§13)."""
    transcript = fields(
        "session-crypto/2 transcript", "2", SUITE, client_id, session_id, client_public,
        server_public,
    )
    return hashlib.sha256(transcript).digest()


def verify_signature(pins: Sequence[ec.EllipticCurvePublicKey], th: bytes, signature: Optional[str]) -> None:
    """The init answer's signature (§14, P1363 ``r ‖ s``) under one of ``pins``."""
    data = fields("session-crypto/2 server signature", th)
    try:
        raw = b64decode(signature or "")
    except ValueError:
        raw = b""
    if len(raw) == 64:
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        for key in pins:
            try:
                key.verify(der, data, ec.ECDSA(hashes.SHA256()))
                return
            except InvalidSignature:
                continue
    raise ProtocolError("signature", "the init answer is not signed by a pinned server key")


def v2_keys(
    z: bytes,
    client_public: bytes,
    server_public: bytes,
    answer: Mapping[str, Any],
    client_id: str,
    pins: Sequence[ec.EllipticCurvePublicKey],
) -> SessionKeys:
    """v2 (§13–14): the transcript hash, the signature when keys are pinned, the
    directional keys, then the key confirmation."""
    session_id = str(answer["sessionId"])
    expires = int(answer.get("expiresInSec", 0))
    th = transcript_hash(client_id, session_id, client_public, server_public)
    if pins:
        verify_signature(pins, th, answer.get("signature"))
    c2s = _hkdf(z, th, b"session-crypto/2 c2s")
    s2c = _hkdf(z, th, b"session-crypto/2 s2c")
    confirm_key = _hkdf(z, th, b"session-crypto/2 confirm")
    expected = hmac.new(
        confirm_key, fields("session-crypto/2 server confirm", th, str(expires)), hashlib.sha256
    ).digest()
    try:
        given = b64decode(str(answer.get("confirm", "")))
    except ValueError:
        given = b""
    if not given or not hmac.compare_digest(given, expected):
        raise ProtocolError(
            "confirmation", "key confirmation failed: the init exchange was changed in transit"
        )
    return SessionKeys(2, session_id, client_id, c2s, s2c, expires)


def request_aad(
    s: SessionKeys, line: RequestLine, timestamp: str, nonce: str, call_key: Optional[str] = None
) -> bytes:
    """The request AAD of the session's version (§11, §15)."""
    if s.protocol == 1:
        return f"{timestamp}|{nonce}|{s.kid}|{s.client_id}".encode()
    base = [
        "session-crypto/2 request", line.method, line.target, line.content_type, s.kid,
        s.client_id, timestamp, nonce,
    ]
    return fields(*base) if call_key is None else fields(*base, call_key)


def response_aad(
    s: SessionKeys, line: RequestLine, timestamp: str, nonce: str, request_nonce: str, status: int
) -> bytes:
    """The response AAD (§11, §15): v2 binds the request's nonce and the status."""
    if s.protocol == 1:
        return f"{timestamp}|{nonce}|{s.kid}|{s.client_id}".encode()
    return fields(
        "session-crypto/2 response", line.method, line.target, line.content_type, s.kid,
        s.client_id, timestamp, nonce, request_nonce, str(status),
    )


def refusal_aad(
    s: SessionKeys, line: RequestLine, timestamp: str, nonce: str, request_nonce: str, status: int
) -> bytes:
    """The AAD of a sealed refusal (§9.1, v2 only)."""
    return fields(
        "session-crypto/2 refusal", line.method, line.target, line.content_type, s.kid,
        s.client_id, timestamp, nonce, request_nonce, str(status),
    )


def seal(key: bytes, aad: bytes, plaintext: bytes, iv: Optional[bytes] = None) -> bytes:
    """``IV ‖ ciphertext ‖ tag`` (AES-256-GCM, 12-byte IV, 16-byte tag)."""
    iv = os.urandom(12) if iv is None else iv
    return iv + AESGCM(key).encrypt(iv, plaintext, aad)


def open_envelope(key: bytes, aad: bytes, envelope: bytes) -> bytes:
    """Opens an envelope; ``ProtocolError('response')`` when it does not authenticate."""
    if len(envelope) < 28:
        raise ProtocolError("response", "sealed answer shorter than 28 bytes")
    try:
        return AESGCM(key).decrypt(envelope[:12], envelope[12:], aad)
    except InvalidTag:
        raise ProtocolError(
            "response", "the sealed answer does not authenticate for this request"
        ) from None


def fresh_nonce() -> str:
    """A request nonce: a UUID v4 (never ``rsp_…``, which marks the server's)."""
    return str(uuid.uuid4())


ANSWER_KEY = re.compile(r"^(\d{1,16})\.([A-Za-z0-9_-]{16,128})$")
REFUSAL_KEY = re.compile(r"^(\d{1,16})\.(rsp_[A-Za-z0-9_-]{16,124})$")
CALL_KEY = re.compile(r'^[\x21\x23-\x5b\x5d-\x7e]{1,255}$')
CLIENT_ID = re.compile(r"^[\x21-\x39\x3b-\x7b\x7d\x7e]{1,128}$")


def quoted_call_key(key: str) -> str:
    """``key`` as an ``Idempotency-Key`` value (a quoted sf-string)."""
    if not CALL_KEY.fullmatch(key):
        raise ConfigurationError('idempotency_key: 1-255 visible ASCII characters without " or \\')
    return f'"{key}"'


def import_pin(key: ServerKey, what: str = "server_key") -> ec.EllipticCurvePublicKey:
    """A pinned server signing key: a PEM ``PUBLIC KEY`` (what ``keygen --signing``
    prints), base64 of an SPKI or of a raw 65-byte point (the well-known document's
    ``publicKey``), or its JWK. Anything else is a ``ConfigurationError``."""
    try:
        if isinstance(key, Mapping):
            if key.get("kty") != "EC" or key.get("crv") != "P-256" or "d" in key:
                raise ConfigurationError(f"{what}: a JWK must be a P-256 public key (kty EC, crv P-256, no d)")
            x = base64.urlsafe_b64decode(str(key["x"]) + "==")
            y = base64.urlsafe_b64decode(str(key["y"]) + "==")
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        text = key.decode() if isinstance(key, bytes) else key
        if not isinstance(text, str):
            raise ConfigurationError(f"{what}: expected a PEM or base64 public key or a JWK")
        text = text.strip()
        if re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text):
            raise ConfigurationError(f"{what}: that is a private key; pin the server's public key")
        if text.startswith("-----BEGIN PUBLIC KEY-----"):
            loaded = serialization.load_pem_public_key(text.encode())
        else:
            der = b64decode(re.sub(r"\s+", "", text))
            if len(der) == 65 and der[0] == 4:
                return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), der)
            loaded = serialization.load_der_public_key(der)
        if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(loaded.curve, ec.SECP256R1):
            raise ConfigurationError(f"{what}: not a P-256 public key")
        return loaded
    except ConfigurationError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigurationError(f"{what}: not a P-256 public key ({e})") from None


def init_body(public: bytes, protocol: int, ttl_sec: Optional[int]) -> str:
    """The JSON body of an init request."""
    body: dict[str, Any] = {"clientPublicKey": b64encode(public)}
    if ttl_sec is not None:
        body["ttlSec"] = ttl_sec
    if protocol == 2:
        body["protocol"] = 2
    return json.dumps(body, separators=(",", ":"))


def session_from_answer(
    private: ec.EllipticCurvePrivateKey,
    answer: Any,
    client_id: str,
    protocol: int,
    pins: List[ec.EllipticCurvePublicKey],
) -> SessionKeys:
    """The session an init answer sets up, every check made (no silent downgrade)."""
    if not isinstance(answer, dict):
        raise ProtocolError("format", "the init answer is not a JSON object")
    session_id = answer.get("sessionId")
    server_key = answer.get("serverPublicKey")
    if not isinstance(session_id, str) or not re.fullmatch(r"S-[0-9a-f]{32}", session_id) or not isinstance(server_key, str):
        raise ProtocolError("format", "the init answer lacks a valid sessionId or serverPublicKey")
    try:
        server_public = b64decode(server_key)
    except ValueError:
        raise ProtocolError("format", "serverPublicKey is not base64") from None
    z = shared_secret(private, server_public)
    if protocol == 2:
        if answer.get("protocol") != 2:
            raise ProtocolError("format", "the server did not answer with protocol 2")
        return v2_keys(z, raw_public(private), server_public, answer, client_id, pins)
    if answer.get("protocol") not in (None, 1):
        raise ProtocolError("format", "the server answered another protocol version")
    return v1_keys(z, session_id, client_id, int(answer.get("expiresInSec", 0)))
