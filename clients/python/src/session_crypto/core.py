"""The session's logic without I/O: what each request sends and what each answer means,
shared by the sync and async clients (``client.py``), which only move bytes. The
call's own shapes, and the reading of the server's refusals, are in ``calls.py``."""

from __future__ import annotations

import json as jsonlib
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from . import protocol as p
from .calls import (
    Attempt, Call, Headers, Opened, SealedRefusal, is_session_expired, now_ms, refusal_of, retry_after_of,
    wire_target,
)
from .errors import ClockSkewError, ConfigurationError, OutcomeUnknown, ProtocolError, ServerRefused

#: Methods HTTP defines as idempotent: the library may send them twice.
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "OPTIONS"})
#: The protocol's own request headers: the library's.
OWN = frozenset(
    {
        "x-kid", "x-idempotency-key", "x-clientid", "content-type", "x-inner-content-type",
        "x-envelope", "idempotency-key", "x-sealed-refusals", "host", "content-length",
        "transfer-encoding",
    }
)
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
SKEW_FIX_MS = 30_000
MAX_SKEW_FIX_MS = 86_400_000


@dataclass
class Core:
    """A session's settings and state."""

    base_url: str
    client_id: str
    protocol: int = 2
    pins: List[ec.EllipticCurvePublicKey] = field(default_factory=list)
    retry: str = "idempotent"
    ttl_sec: Optional[int] = None
    init_path: str = "/session/init"
    window_ms: int = 300_000
    keys: Optional[p.SessionKeys] = None
    #: From authenticated server times (sealed refusals, v2 answers): every request.
    clock_offset_ms: int = 0
    auth_clock: bool = False
    #: From a refusal's ``Date`` (not authenticated): inits and idempotent calls only,
    #: until an authenticated time is known.
    date_offset_ms: int = 0
    revoked: bool = False

    @classmethod
    def configure(
        cls,
        base_url: str,
        client_id: str,
        *,
        protocol: int = 2,
        server_key: Any = None,
        retry: str = "idempotent",
        ttl_sec: Optional[int] = None,
        init_path: str = "/session/init",
        pinned: bool = False,
    ) -> "Core":
        """Checks every option (``ConfigurationError``, before anything is sent)."""
        if not isinstance(base_url, str):
            raise ConfigurationError("base_url: a string, the server's origin")
        base = base_url.rstrip("/")
        u = urlsplit(base)
        if u.scheme not in ("http", "https") or not u.netloc or u.query or u.fragment or "@" in u.netloc:
            raise ConfigurationError(f"base_url: an http(s) URL without query or credentials, got {base_url!r}")
        if not isinstance(client_id, str) or not p.CLIENT_ID.fullmatch(client_id):
            raise ConfigurationError("client_id: 1-128 visible ASCII characters without | and :")
        if protocol not in (1, 2):
            raise ConfigurationError(f"protocol: 1 or 2, got {protocol!r}")
        if retry not in ("idempotent", "never"):
            raise ConfigurationError(f"retry: 'idempotent' or 'never', got {retry!r}")
        if init_path not in ("/session/init", "/v1/session/init"):
            raise ConfigurationError(f"init_path: '/session/init' or '/v1/session/init', got {init_path!r}")
        if ttl_sec is not None and (not isinstance(ttl_sec, int) or ttl_sec <= 0):
            raise ConfigurationError(f"ttl_sec: a positive whole number of seconds, got {ttl_sec!r}")
        if pinned and server_key is None:
            raise ConfigurationError(
                "server_key is None (a missing setting?): pass the key, or leave it out to connect unpinned"
            )
        keys = [] if server_key is None else list(server_key) if isinstance(server_key, (list, tuple)) else [server_key]
        if server_key is not None and not keys:
            raise ConfigurationError("server_key: an empty list pins nothing; leave it out instead")
        if keys and protocol != 2:
            raise ConfigurationError("server_key: pinning needs protocol 2")
        pins = [p.import_pin(k, f"server_key[{i}]" if len(keys) > 1 else "server_key") for i, k in enumerate(keys)]
        return cls(base, client_id, protocol, pins, retry, ttl_sec, init_path)

    # -- the clock: corrected from authenticated server times only --------------------

    def now(self, corrected: bool = True) -> int:
        """The clock: the authenticated correction once known; before, the ``Date``
        one for what may safely be sent twice (``corrected``) only."""
        if self.auth_clock:
            return now_ms() + self.clock_offset_ms
        return now_ms() + (self.date_offset_ms if corrected else 0)

    def learn_time(self, server_ms: int) -> bool:
        skew = server_ms - now_ms()
        if abs(skew - self.clock_offset_ms) > SKEW_FIX_MS and abs(skew) <= MAX_SKEW_FIX_MS:
            self.clock_offset_ms = skew
            self.auth_clock = True
            return True
        return False

    def after_unsealed(
        self, e: ServerRefused, headers: Mapping[str, str], sent_ms: int, repeatable: bool, retried: bool
    ) -> bool:
        """An unsealed 400 ``CRYPTO_ERROR`` while the answer's ``Date`` is more than 30 s
        from this machine's clock: the call may be sent once more with the clock
        corrected from it when running it twice is harmless (an init, an idempotent
        call); otherwise ``ClockSkewError`` says why. Any other refusal stands."""
        date = {k.lower(): v for k, v in headers.items()}.get("date")
        skew: Optional[int] = None
        if date is not None:
            try:
                skew = int(parsedate_to_datetime(date).timestamp() * 1000) + 500 - sent_ms
            except (TypeError, ValueError):
                skew = None
        if e.status != 400 or e.code != "CRYPTO_ERROR" or skew is None or abs(skew) <= SKEW_FIX_MS:
            raise e
        if repeatable and not retried and not self.auth_clock:
            self.date_offset_ms += skew
            return True
        raise ClockSkewError(e, skew)

    def idempotency_key(self, corrected: bool = True) -> Tuple[str, str, str]:
        ts, nonce = str(self.now(corrected)), p.fresh_nonce()
        return f"{ts}.{nonce}", ts, nonce

    # -- init -------------------------------------------------------------------------

    def init_request(self) -> Tuple[ec.EllipticCurvePrivateKey, str, Dict[str, str], str]:
        private = p.generate_key_pair()
        key, _, _ = self.idempotency_key()
        headers = {"Content-Type": "application/json", "X-Idempotency-Key": key, "X-ClientId": self.client_id}
        body = p.init_body(p.raw_public(private), self.protocol, self.ttl_sec)
        return private, self.base_url + self.init_path, headers, body

    def init_answer(self, private: ec.EllipticCurvePrivateKey, status: int, headers: Mapping[str, str], body: bytes) -> p.SessionKeys:
        if status != 200:
            raise refusal_of(status, headers, body)
        try:
            answer = jsonlib.loads(body)
        except ValueError:
            raise ProtocolError("format", "the init answer is not JSON") from None
        return p.session_from_answer(private, answer, self.client_id, self.protocol, self.pins)

    # -- calls --------------------------------------------------------------------------

    def revoke_request(self, keys: p.SessionKeys) -> Tuple[str, Dict[str, str], bytes]:
        """``POST /session/revoke`` with ``{"action":"revoke"}`` (its route binds no
        ``Idempotency-Key``)."""
        line = p.RequestLine("POST", "/session/revoke")
        key, ts, nonce = self.idempotency_key()
        body = p.seal(keys.request_key, p.request_aad(keys, line, ts, nonce), b'{"action":"revoke"}')
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Kid": keys.kid,
            "X-Idempotency-Key": key,
            "X-ClientId": keys.client_id,
        }
        return self.base_url + "/session/revoke", headers, body

    def repeatable(self, method: str) -> bool:
        return self.retry == "idempotent" and method in IDEMPOTENT

    def prepare(
        self,
        method: str,
        path: str,
        *,
        content: Union[bytes, str, None] = None,
        json: Any = None,
        headers: Headers = None,
        content_type: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Call:
        m = method.upper() if isinstance(method, str) else ""
        if not TOKEN.fullmatch(m):
            raise ConfigurationError(f"method: not an HTTP method: {method!r}")
        if m in ("HEAD", "CONNECT", "TRACE", "TRACK"):
            raise ConfigurationError(f"method: {m} is not offered (its answer cannot carry a sealed body)")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(f"path: starts with / (the server's route), got {path!r}")
        if content is not None and json is not None:
            raise ConfigurationError("pass content or json, not both")
        if m == "GET" and (content is not None or json is not None):
            raise ConfigurationError("a GET has no body; use POST")
        extra: Dict[str, str] = {}
        for name, value in (headers.items() if isinstance(headers, Mapping) else headers or []):
            if name.lower() == "content-type":
                content_type = content_type if content_type is not None else value
            elif name.lower() not in OWN:
                extra[name] = value
        if json is not None:
            plaintext = jsonlib.dumps(json, separators=(",", ":")).encode()
            content_type = content_type if content_type is not None else "application/json"
        elif isinstance(content, str):
            plaintext = content.encode("utf-8")
        elif isinstance(content, (bytes, bytearray, memoryview)):
            plaintext = bytes(content)
        elif content is None:
            plaintext = b""
        else:
            raise ConfigurationError(f"content: bytes or str, got {type(content).__name__}")
        target = wire_target(path)
        call_key = p.quoted_call_key(idempotency_key) if idempotency_key is not None else f'"{p.fresh_nonce()}"'
        return Call(
            # A base URL with a path is a mount behind a proxy that strips it: requests
            # go to <base><path>, v2 binds <path>, what the server receives.
            url=self.base_url + target,
            line=p.RequestLine(m, target, content_type or ""),
            headers=extra,
            plaintext=plaintext,
            call_key=call_key,
            inner_type=content_type is not None,
        )

    def seal(self, call: Call, keys: p.SessionKeys) -> Attempt:
        key, ts, nonce = self.idempotency_key(self.repeatable(call.line.method))
        envelope = p.seal(keys.request_key, p.request_aad(keys, call.line, ts, nonce, call.call_key), call.plaintext)
        headers = dict(call.headers)
        headers.update(
            {
                "Content-Type": "application/octet-stream",
                "X-Kid": keys.kid,
                "X-Idempotency-Key": key,
                "X-ClientId": keys.client_id,
                "Idempotency-Key": call.call_key,
            }
        )
        if call.inner_type:
            headers["X-Inner-Content-Type"] = call.line.content_type
        if keys.protocol == 2:
            headers["X-Sealed-Refusals"] = "1"
        body = envelope
        if call.line.method == "GET":
            headers["X-Envelope"] = p.b64encode(envelope)
            body = b""
        return Attempt(call.line.method, call.url, headers, body, nonce, int(ts), keys)

    def answer(self, call: Call, a: Attempt, status: int, headers: Mapping[str, str], body: bytes) -> Opened:
        """The opened answer; ``SealedRefusal`` or ``ServerRefused`` for a refusal."""
        s = a.keys
        h = {k.lower(): v for k, v in headers.items()}
        if s.protocol == 2 and "x-sealed-refusal" in h:
            raise self._refusal(call, a, status, h, body)
        key = h.get("x-idempotency-key")
        if key is None:
            raise refusal_of(status, h, body)
        if h.get("x-kid") != s.kid:
            raise ProtocolError("response", "the answer names another session")
        m = p.ANSWER_KEY.fullmatch(key)
        if not m:
            raise ProtocolError("response", "the answer has no valid X-Idempotency-Key")
        ts, nonce = m.group(1), m.group(2)
        if s.protocol == 1 and (nonce == a.nonce or not nonce.startswith("rsp_")):
            raise ProtocolError("response", "a v1 answer without the rsp_ mark of a server answer")
        if abs(int(ts) - self.now(self.repeatable(call.line.method))) > self.window_ms:
            raise ProtocolError("response", "the answer is stamped outside the window")
        inner_type = h.get("x-inner-content-type", "")
        inner = h.get("x-inner-status")
        if inner is not None and (status != 200 or not re.fullmatch(r"[1-5][0-9]{2}", inner)):
            raise ProtocolError("response", "malformed X-Inner-Status")
        code = status if inner is None else int(inner)
        line = p.RequestLine(call.line.method, call.line.target, inner_type)
        plaintext = p.open_envelope(s.response_key, p.response_aad(s, line, ts, nonce, a.nonce, code), body)
        if s.protocol == 2:
            self.learn_time(int(ts))
        out = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if inner_type:
            out["content-type"] = inner_type
        return Opened(code, out, plaintext)

    def _refusal(self, call: Call, a: Attempt, status: int, h: Mapping[str, str], body: bytes) -> SealedRefusal:
        s = a.keys
        if h.get("x-kid") != s.kid:
            raise ProtocolError("response", "the refusal names another session")
        m = p.REFUSAL_KEY.fullmatch(h.get("x-idempotency-key", ""))
        if not m:
            raise ProtocolError("response", "the sealed refusal has no valid X-Idempotency-Key")
        ts, nonce = m.group(1), m.group(2)
        said_bytes = p.open_envelope(s.response_key, p.refusal_aad(s, call.line, ts, nonce, a.nonce, status), body)
        try:
            said = jsonlib.loads(said_bytes)
        except ValueError:
            raise ProtocolError("format", "a sealed refusal that is not JSON") from None
        code = said.get("error", "") if isinstance(said, dict) else ""
        refusal = ServerRefused(status, code, said_bytes.decode(), retry_after_of(h), sealed=True)
        executed = not (isinstance(said, dict) and said.get("outcome") == "not-executed")
        return SealedRefusal(refusal, executed, int(ts), a.stamped_ms)

    def settle(
        self, call: Call, a: Attempt, status: int, headers: Mapping[str, str], body: bytes,
        sent_ms: int, retried: bool,
    ) -> Optional[Opened]:
        """What an attempt's answer means: the opened answer, or ``None`` when the call
        may be sent once more (a refusal that proves it did not run, or an unsealed one
        explained by the clock for a call that may run twice); raises otherwise (an
        unsealed ``SESSION_EXPIRED`` included: see ``after_expiry``)."""
        try:
            return self.answer(call, a, status, headers, body)
        except SealedRefusal as e:
            self.after_refusal(e, retried)
        except ServerRefused as e:
            if is_session_expired(e):
                raise
            self.after_unsealed(e, headers, sent_ms, self.repeatable(call.line.method), retried)
        return None

    def settle_init(
        self, private: ec.EllipticCurvePrivateKey, status: int, headers: Mapping[str, str],
        body: bytes, sent_ms: int, retried: bool,
    ) -> Optional[p.SessionKeys]:
        """The session an init answer sets up, or ``None`` when the init may be sent once
        more with the clock its ``Date`` gives (an init may run twice)."""
        try:
            return self.init_answer(private, status, headers, body)
        except ServerRefused as e:
            self.after_unsealed(e, headers, sent_ms, True, retried)
        return None

    def after_expiry(self, e: ServerRefused, call: Call) -> None:
        """An unsealed ``SESSION_EXPIRED``: raises ``OutcomeUnknown`` unless the call may be
        sent again on a new session (not revoked, and its method may run twice)."""
        if self.revoked or not self.repeatable(call.line.method):
            raise OutcomeUnknown(e) from e

    def after_refusal(self, e: SealedRefusal, retried: bool) -> bool:
        """Whether the call may be sent once more (it provably did not run and the
        clocks disagree: corrected); otherwise raises what the application gets."""
        if e.executed:
            raise OutcomeUnknown(e.refusal)
        skew = e.server_ms - e.stamped_ms
        if e.refusal.code == "CRYPTO_ERROR" and not retried and abs(skew) > SKEW_FIX_MS and self.learn_time(e.server_ms):
            return True
        raise e.refusal
