"""The clients: ``Client`` (sync) and ``AsyncClient`` on httpx — calls shaped like
httpx's (``client.post("/api/orders", json={...})``), the session's lifecycle (set-up,
one re-init on expiry, revocation) handled, typed errors."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Dict, Mapping, Optional, Tuple, Union

import httpx

from . import flows
from . import protocol as p
from .calls import DEFAULT, Call, Headers, Opened, is_session_expired
from .errors import NetworkError, RevokedError, ServerRefused
from .response import Response
from .sync import UNSET, Content, SyncSession, configure
from .verbs import Verbs


def _network(e: httpx.HTTPError, what: str) -> NetworkError:
    return NetworkError(f"{what}: {e}", timeout=isinstance(e, httpx.TimeoutException))


class Client(SyncSession):
    """A session with a session-crypto server over an ``httpx.Client`` (its connection
    pool and timeouts). Thread-safe; use it as a context manager or call ``close()``.

    >>> with Client("http://127.0.0.1:3000", "MY_APP") as c:   # doctest: +SKIP
    ...     c.post("/api/orders", json={"item": "book"}).json()
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        *,
        server_key: Any = UNSET,
        protocol: int = 2,
        retry: str = "idempotent",
        ttl_sec: Optional[int] = None,
        init_path: str = "/session/init",
        timeout: Union[float, httpx.Timeout, None] = 10.0,
        http: Optional[httpx.Client] = None,
    ) -> None:
        super().__init__(configure(base_url, client_id, server_key, protocol, retry, ttl_sec, init_path))
        self._http = http or httpx.Client(timeout=timeout)

    def __enter__(self) -> "Client":
        return self

    def close(self) -> None:
        self._http.close()

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: Any
    ) -> Tuple[int, Mapping[str, str], bytes]:
        limit: Dict[str, Any] = {} if timeout is DEFAULT else {"timeout": timeout}
        try:
            r = self._http.request(method, url, headers=headers, content=body, **limit)
        except httpx.HTTPError as e:
            raise _network(e, f"{method} {url}") from e
        return r.status_code, r.headers, r.content


class AsyncClient(Verbs[Awaitable[Response]]):
    """The same over an ``httpx.AsyncClient``: many calls may run at once on one
    session (one re-init for every call that found the session gone)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        *,
        server_key: Any = UNSET,
        protocol: int = 2,
        retry: str = "idempotent",
        ttl_sec: Optional[int] = None,
        init_path: str = "/session/init",
        timeout: Union[float, httpx.Timeout, None] = 10.0,
        http: Optional[httpx.AsyncClient] = None,
    ) -> None:
        self._core = configure(base_url, client_id, server_key, protocol, retry, ttl_sec, init_path)
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def session_id(self) -> str:
        return (await self._keys()).session_id

    async def _keys(self) -> p.SessionKeys:
        async with self._lock:
            if self._core.keys is None:
                self._core.keys = await self._init()
            return self._core.keys

    async def _init(self) -> p.SessionKeys:
        return await flows.drive_async(flows.init(self._core), self._send)

    async def _renew(self, failed: p.SessionKeys) -> p.SessionKeys:
        async with self._lock:
            if self._core.keys is failed:
                self._core.keys = await self._init()
            assert self._core.keys is not None
            return self._core.keys

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: Any
    ) -> Tuple[int, Mapping[str, str], bytes]:
        limit: Dict[str, Any] = {} if timeout is DEFAULT else {"timeout": timeout}
        try:
            r = await self._http.request(method, url, headers=headers, content=body, **limit)
        except httpx.HTTPError as e:
            raise _network(e, f"{method} {url}") from e
        return r.status_code, r.headers, r.content

    async def _attempt(self, call: Call, keys: p.SessionKeys, timeout: Any) -> Opened:
        return await flows.drive_async(flows.attempt(self._core, call, keys, timeout), self._send)

    async def request(
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
        """As ``Client.request``."""
        if self._core.revoked:
            raise RevokedError()
        call = self._core.prepare(
            method, path, content=content, json=json, headers=headers,
            content_type=content_type, idempotency_key=idempotency_key,
        )
        keys = await self._keys()
        try:
            opened = await self._attempt(call, keys, timeout)
        except ServerRefused as e:
            if not is_session_expired(e):
                raise
            # A new session (unless revoked), the call again only where it may run twice.
            fresh = keys if self._core.revoked else await self._renew(keys)
            self._core.after_expiry(e, call)
            opened = await self._attempt(call, fresh, timeout)
        return Response(opened.status_code, opened.headers, opened.content)

    def _call(self, method: str, path: str, kw: Dict[str, Any]) -> Awaitable[Response]:
        return self.request(method, path, **kw)

    async def revoke(self) -> None:
        """As ``Client.revoke``."""
        async with self._lock:
            if self._core.revoked:
                return
            self._core.revoked = True
            keys = self._core.keys
        if keys is None:
            return
        await flows.drive_async(flows.revoke(self._core, keys), self._send)
