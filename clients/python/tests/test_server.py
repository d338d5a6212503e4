"""The library against real servers — tests/api/python.rs starts one per crypto backend
(each signing its init answers, each a gateway to a Python echo service under /api/)
and passes their URLs as SERVER_URLS="name=url,…"; without it these tests are skipped."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from typing import Any, Callable, Dict, List

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import session_crypto as sc
from session_crypto import protocol

SERVERS = [pair.split("=", 1) for pair in os.environ.get("SERVER_URLS", "").split(",") if pair]
pytestmark = pytest.mark.skipif(not SERVERS, reason="SERVER_URLS not set (tests/api/python.rs starts the servers)")
BASE = SERVERS[0][1] if SERVERS else ""
BUY = b'{"schemeCode":"AEF","amount":5000}'


def seen(r: sc.Response) -> Dict[str, Any]:
    """What the echo upstream says it received."""
    v: Dict[str, Any] = r.json()
    v["bytes"] = __import__("base64").b64decode(v["body"])
    return v


@pytest.mark.parametrize("backend,url", SERVERS or [("none", "")])
def test_v1_and_v2_on_both_init_routes_then_revoke(backend: str, url: str) -> None:
    for version in (1, 2):
        for init_path in ("/session/init", "/v1/session/init"):
            with sc.Client(url, "PY_CLIENT", protocol=version, init_path=init_path) as c:
                r = c.post("/transaction/purchase", content=BUY, headers={"X-Request-Id": "py-1"})
                assert r.status_code == 200 and r.json()["status"] == "SUCCESS"
                assert r.headers["x-request-id"] == "py-1"
                c.revoke()
                c.revoke()  # sends nothing
                with pytest.raises(sc.RevokedError):
                    c.post("/transaction/purchase", content=BUY)


def well_known() -> Dict[str, Any]:
    return httpx.get(f"{BASE}/.well-known/session-crypto").json()  # type: ignore[no-any-return]


def test_pinned_in_every_form_and_a_wrong_pin_refused() -> None:
    key = well_known()["keys"][0]
    pin = protocol.import_pin(key["jwk"])
    pem = pin.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for form in (key["jwk"], key["publicKey"], pem, [pem, ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()]):
        with sc.Client(BASE, "PY_PIN", server_key=form) as c:
            assert c.post("/transaction/purchase", content=BUY).status_code == 200
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    with sc.Client(BASE, "PY_PIN", server_key=stranger.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)) as c:
        with pytest.raises(sc.ProtocolError) as e:
            c.get("/api/x")
        assert e.value.reason == "signature"
    with pytest.raises(sc.ConfigurationError):
        sc.Client(BASE, "PY_PIN", server_key=None)  # present but None: a missing setting
    for bad in ({"base_url": "localhost:3000"}, {"client_id": "a|b"}, {"protocol": 3}):
        args: Dict[str, Any] = {"base_url": BASE, "client_id": "C", **bad}
        with pytest.raises(sc.ConfigurationError):
            sc.Client(args.pop("base_url"), args.pop("client_id"), **args)


def test_gateway_methods_bodies_and_statuses() -> None:
    with sc.Client(BASE, "PY_GATEWAY") as c:
        v = seen(c.post("/api/orders?expand=lines", json={"item": "book", "qty": 2}))
        assert (v["method"], v["target"], v["headers"]["content-type"]) == ("POST", "/orders?expand=lines", "application/json")
        assert json.loads(v["bytes"]) == {"item": "book", "qty": 2}
        assert v["headers"]["x-session-client-id"] == "PY_GATEWAY"
        binary = bytes(range(256))
        v = seen(c.put("/api/blob", content=binary, content_type="application/octet-stream"))
        assert (v["method"], v["bytes"]) == ("PUT", binary)
        v = seen(c.get("/api/notes?limit=5"))
        assert (v["method"], v["bytes"], v["target"]) == ("GET", b"", "/notes?limit=5")
        assert c.delete("/api/status/204").status_code == 204
        for status in (201, 404, 503):
            r = c.get(f"/api/status/{status}")
            assert r.status_code == status and not (r.is_success and status >= 400)
        # The target goes out as a URL parser sends it (as from the other libraries).
        assert seen(c.get("/api/a b/./c/../d?q=x y"))["target"] == "/a%20b/d?q=x%20y"
        with pytest.raises(sc.ServerRefused) as e:
            c.get("/api/%2e%2e/x")
        assert e.value.status == 404
        with pytest.raises(sc.ConfigurationError):
            c.request("HEAD", "/api/x")
        with pytest.raises(sc.ConfigurationError):
            c.get("/api/x", content=b"x")
        with pytest.raises(sc.ConfigurationError):
            c.get("api/x")


class Forge(httpx.BaseTransport):
    """A man in the middle: forwards every request, and replaces the answers of the first
    ``n`` requests to ``path`` with ``forged``. Counts what reached the server."""

    def __init__(self, path: str, n: int, forged: Callable[[], httpx.Response]) -> None:
        self.inner = httpx.HTTPTransport()
        self.path, self.left, self.forged = path, n, forged
        self.forwarded: Dict[str, int] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.forwarded[path] = self.forwarded.get(path, 0) + 1
        answer = self.inner.handle_request(request)
        if path == self.path and self.left > 0:
            self.left -= 1
            answer.read()
            return self.forged()
        return answer


def expired() -> httpx.Response:
    return httpx.Response(401, json={"error": "SESSION_EXPIRED"})


def test_a_forged_expiry_runs_a_post_once_and_resends_a_get() -> None:
    mitm = Forge("/api/orders", 1, expired)
    with sc.Client(BASE, "PY_ONCE", http=httpx.Client(transport=mitm)) as c:
        first = c.session_id
        with pytest.raises(sc.OutcomeUnknown) as e:
            c.post("/api/orders", json={"qty": 1})
        assert e.value.refusal.status == 401
        assert mitm.forwarded["/api/orders"] == 1, "never sent twice"
        assert c.session_id != first, "a new session is ready"
    for forged in (expired, lambda: httpx.Response(400, json={"error": "CRYPTO_ERROR"}), lambda: httpx.Response(502, json={"error": "BAD_GATEWAY"})):
        mitm = Forge("/api/orders", 1, forged)
        with sc.Client(BASE, "PY_ONCE", http=httpx.Client(transport=mitm)) as c:
            try:
                c.post("/api/orders", json={"qty": 1})
            except (sc.OutcomeUnknown, sc.ServerRefused):
                pass
            assert mitm.forwarded["/api/orders"] == 1
    mitm = Forge("/api/orders", 1, expired)
    with sc.Client(BASE, "PY_ONCE", http=httpx.Client(transport=mitm)) as c:
        assert c.get("/api/orders").status_code == 200, "a GET is re-sent after a new session"
        assert mitm.forwarded["/api/orders"] == 2


def test_a_dropped_answer_is_a_network_error_and_a_time_limit_one_too() -> None:
    class Drop(Forge):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            answer = super().handle_request(request)
            if request.url.path != self.path:
                return answer
            raise httpx.ReadError("connection reset")

    mitm = Drop("/api/orders", 0, expired)
    with sc.Client(BASE, "PY_DROP", http=httpx.Client(transport=mitm)) as c:
        with pytest.raises(sc.NetworkError) as e:
            c.post("/api/orders", json={"qty": 1})
        assert not e.value.timeout
        assert mitm.forwarded["/api/orders"] == 1, "the upstream ran it once; never re-sent"
    with sc.Client(BASE, "PY_TIME") as c:
        started = time.monotonic()
        with pytest.raises(sc.NetworkError) as e:
            c.get("/api/slow/3000", timeout=0.3)
        assert e.value.timeout and time.monotonic() - started < 2
        assert c.get("/api/fast").status_code == 200, "the session goes on"


def test_fifty_concurrent_calls_on_one_async_client() -> None:
    async def run() -> List[int]:
        async with sc.AsyncClient(BASE, "PY_ASYNC") as c:
            rs = await asyncio.gather(*[c.post(f"/api/orders/{i}", json={"n": i}) for i in range(50)])
            sid = await c.session_id()
            assert sid.startswith("S-")
            await c.revoke()
            return [r.status_code for r in rs]

    assert asyncio.run(run()) == [200] * 50


def test_the_async_client_makes_every_call_the_sync_one_does() -> None:
    async def run() -> List[str]:
        async with sc.AsyncClient(BASE, "PY_ASYNC_VERBS") as c:
            rs = [
                await c.get("/api/verbs"), await c.post("/api/verbs", json={}),
                await c.put("/api/verbs", json={}), await c.patch("/api/verbs", json={"n": 1}),
                await c.delete("/api/verbs"),
            ]
            return [seen(r)["method"] for r in rs]

    assert asyncio.run(run()) == ["GET", "POST", "PUT", "PATCH", "DELETE"]
    with sc.Client(BASE, "PY_SYNC_VERBS") as c:
        v = seen(c.patch("/api/verbs", json={"n": 1}))
        assert (v["method"], json.loads(v["bytes"])) == ("PATCH", {"n": 1})


def test_the_same_calls_on_requests() -> None:
    from session_crypto.requests import Client as RequestsClient

    with RequestsClient(BASE, "PY_REQUESTS") as c:
        assert c.post("/transaction/purchase", content=BUY).json()["status"] == "SUCCESS"
        v = seen(c.post("/api/orders", json={"item": "book"}, headers={"X-Request-Id": "rq-1"}))
        assert (v["method"], v["headers"]["x-request-id"], json.loads(v["bytes"])) == ("POST", "rq-1", {"item": "book"})
        r = c.get("/api/status/404")
        assert (r.status_code, r.ok) == (404, False)
        with pytest.raises(sc.NetworkError) as e:
            c.get("/api/slow/3000", timeout=0.3)
        assert e.value.timeout
        assert c.get("/api/fast").ok
        c.revoke()
        with pytest.raises(sc.RevokedError):
            c.get("/api/x")


def test_a_slow_clock_recovers_only_where_sending_twice_is_harmless(monkeypatch: pytest.MonkeyPatch) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 600)  # ten minutes slow
    mitm = Forge("/none", 0, expired)
    with sc.Client(BASE, "PY_SKEW", http=httpx.Client(transport=mitm)) as c:
        # The init is refused (its stamp is outside the window), unsealed: corrected from
        # the answer's Date — an init may run twice — and sent once more.
        assert c.get("/api/orders").status_code == 200
        assert mitm.forwarded["/session/init"] == 2
        # The GET's answer carries the server's time, authenticated: the clock is set.
        assert abs(c.clock_offset_ms - 600_000) < 5_000
    with sc.Client(BASE, "PY_SKEW", http=httpx.Client(transport=mitm)) as c:
        # A POST goes out with this machine's clock (a Date is not authenticated): its
        # refusal comes sealed, with the server's time, proving it did not run:
        # corrected from it, sent once more.
        assert c.post("/transaction/purchase", content=BUY).json()["status"] == "SUCCESS"
        assert mitm.forwarded["/transaction/purchase"] == 2
        assert abs(c.clock_offset_ms - 600_000) < 5_000
        assert c.post("/transaction/purchase", content=BUY).status_code == 200
        assert mitm.forwarded["/transaction/purchase"] == 3
    monkeypatch.setattr(time, "time", real)
    # A forged 400 with a skewed Date moves nothing for a POST: it ran once.
    def ahead() -> httpx.Response:
        date = email.utils.formatdate(real() + 40, usegmt=True)
        return httpx.Response(400, json={"error": "CRYPTO_ERROR"}, headers={"date": date})

    mitm = Forge("/api/orders", 1, ahead)
    with sc.Client(BASE, "PY_SKEW", http=httpx.Client(transport=mitm)) as c:
        with pytest.raises(sc.ClockSkewError):
            c.post("/api/orders", json={"qty": 1})
        assert mitm.forwarded["/api/orders"] == 1
        assert c.clock_offset_ms == 0
