"""The blocking session, whatever carries its bytes: ``Client`` on httpx
(``client.py``) and ``session_crypto.requests.Client`` on requests are this class with
their own ``_send``."""

from __future__ import annotations

import threading
from typing import Any, Dict, Mapping, Optional, Tuple

from . import flows
from . import protocol as p
from .calls import DEFAULT, Call, Headers, Opened, is_session_expired
from .core import Core
from .errors import RevokedError, ServerRefused
from .response import Response
from .verbs import Verbs

#: ``server_key`` left out (as opposed to given as ``None``, a missing setting).
UNSET: Any = object()

Content = Optional[Any]


def configure(
    base_url: str, client_id: str, server_key: Any, protocol: int, retry: str,
    ttl_sec: Optional[int], init_path: str,
) -> Core:
    return Core.configure(
        base_url, client_id, protocol=protocol,
        server_key=None if server_key is UNSET else server_key, retry=retry,
        ttl_sec=ttl_sec, init_path=init_path, pinned=server_key is not UNSET,
    )


class SyncSession(Verbs[Response]):
    """A session with a session-crypto server: set up on first use, one re-init on
    expiry, revocation; thread-safe. Subclasses move the bytes (``_send``)."""

    _core: Core

    def __init__(self, core: Core) -> None:
        self._core = core
        self._lock = threading.Lock()

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: Any
    ) -> Tuple[int, Mapping[str, str], bytes]:
        """One request on the wire; ``NetworkError`` when no answer comes."""
        raise NotImplementedError

    def close(self) -> None:
        """Closes the underlying HTTP client."""

    def __enter__(self) -> "SyncSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def session_id(self) -> str:
        """The session's id (``S-…``), setting it up if needed."""
        return self._keys().session_id

    @property
    def clock_offset_ms(self) -> int:
        """The clock correction in use (server − this machine), from authenticated times."""
        return self._core.clock_offset_ms

    def _keys(self) -> p.SessionKeys:
        with self._lock:
            if self._core.keys is None:
                self._core.keys = self._init()
            return self._core.keys

    def _init(self) -> p.SessionKeys:
        return flows.drive(flows.init(self._core), self._send)

    def _renew(self, failed: p.SessionKeys) -> p.SessionKeys:
        with self._lock:
            if self._core.keys is failed:
                self._core.keys = self._init()
            assert self._core.keys is not None
            return self._core.keys

    def _attempt(self, call: Call, keys: p.SessionKeys, timeout: Any) -> Opened:
        return flows.drive(flows.attempt(self._core, call, keys, timeout), self._send)

    def request(
        self,
        method: str,
        path: str,
        *,
        content: Content = None,
        json: Any = None,
        headers: Headers = None,
        content_type: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        timeout: Any = DEFAULT,
    ) -> Response:
        """Seals the body, sends it, checks and opens the answer. On an unsealed 401
        ``SESSION_EXPIRED`` a new session is set up and the call sent once more only if
        its method is idempotent (``GET``, ``PUT``, ``DELETE``, ``OPTIONS``) and
        ``retry`` allows it; otherwise ``OutcomeUnknown``."""
        if self._core.revoked:
            raise RevokedError()
        call = self._core.prepare(
            method, path, content=content, json=json, headers=headers,
            content_type=content_type, idempotency_key=idempotency_key,
        )
        keys = self._keys()
        try:
            opened = self._attempt(call, keys, timeout)
        except ServerRefused as e:
            if not is_session_expired(e):
                raise
            # A new session (unless revoked), the call again only where it may run twice.
            fresh = keys if self._core.revoked else self._renew(keys)
            self._core.after_expiry(e, call)
            opened = self._attempt(call, fresh, timeout)
        return Response(opened.status_code, opened.headers, opened.content)

    def _call(self, method: str, path: str, kw: Dict[str, Any]) -> Response:
        return self.request(method, path, **kw)

    def revoke(self) -> None:
        """Ends the session on the server. Final (later calls: ``RevokedError``);
        calling it again sends nothing."""
        with self._lock:
            if self._core.revoked:
                return
            self._core.revoked = True
            keys = self._core.keys
        if keys is None:
            return
        flows.drive(flows.revoke(self._core, keys), self._send)
