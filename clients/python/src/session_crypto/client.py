"""The clients: ``Client`` (sync) and ``AsyncClient`` on httpx — calls shaped like
httpx's (``client.post("/api/orders", json={...})``), the session's lifecycle (set-up,
one re-init on expiry, revocation) handled, typed errors."""

from __future__ import annotations

import asyncio
import json as jsonlib
import threading
from typing import Any, Dict, Optional, Union

import httpx

from . import protocol as p
from .core import Attempt, Call, Core, Headers, Opened, SealedRefusal, is_session_expired, refusal_of
from .errors import NetworkError, OutcomeUnknown, RevokedError, ServerRefused

Content = Union[bytes, str, None]

#: ``server_key`` left out (as opposed to given as ``None``, a missing setting).
UNSET: Any = object()


class Response:
    """A decrypted, authenticated answer, shaped like ``httpx.Response``: on a gateway
    route its ``status_code`` and ``headers`` are the upstream's (a sealed 404 is a
    response, not an error), ``Content-Type`` the decrypted body's."""

    def __init__(self, opened: Opened) -> None:
        self.status_code = opened.status_code
        self.headers = httpx.Headers(opened.headers)
        self.content = opened.content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


def _configure(
    base_url: str, client_id: str, server_key: Any, protocol: int, retry: str,
    ttl_sec: Optional[int], init_path: str,
) -> Core:
    return Core.configure(
        base_url, client_id, protocol=protocol,
        server_key=None if server_key is UNSET else server_key, retry=retry,
        ttl_sec=ttl_sec, init_path=init_path, pinned=server_key is not UNSET,
    )


def _network(e: httpx.HTTPError, what: str) -> NetworkError:
    return NetworkError(f"{what}: {e}", timeout=isinstance(e, httpx.TimeoutException))


class Client:
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
        self._core = _configure(base_url, client_id, server_key, protocol, retry, ttl_sec, init_path)
        self._http = http or httpx.Client(timeout=timeout)
        self._lock = threading.Lock()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def session_id(self) -> str:
        return self._keys().session_id

    @property
    def clock_offset_ms(self) -> int:
        return self._core.clock_offset_ms

    def _keys(self) -> p.SessionKeys:
        with self._lock:
            if self._core.keys is None:
                self._core.keys = self._init()
            return self._core.keys

    def _init(self) -> p.SessionKeys:
        private, url, headers, body = self._core.init_request()
        try:
            r = self._http.post(url, headers=headers, content=body)
        except httpx.HTTPError as e:
            raise _network(e, f"POST {url}") from e
        return self._core.init_answer(private, r.status_code, r.headers, r.content)

    def _renew(self, failed: p.SessionKeys) -> p.SessionKeys:
        with self._lock:
            if self._core.keys is failed:
                self._core.keys = self._init()
            assert self._core.keys is not None
            return self._core.keys

    def _attempt(self, call: Call, keys: p.SessionKeys, timeout: Any) -> Opened:
        for retried in (False, True):
            a: Attempt = self._core.seal(call, keys)
            try:
                r = self._http.request(a.method, a.url, headers=a.headers, content=a.body, **timeout)
            except httpx.HTTPError as e:
                raise _network(e, f"{a.method} {a.url}") from e
            try:
                return self._core.answer(call, a, r.status_code, r.headers, r.content)
            except SealedRefusal as e:
                self._core.after_refusal(e, retried)
        raise AssertionError("unreachable")

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
        timeout: Union[float, httpx.Timeout, None, object] = ...,
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
        limit: Dict[str, Any] = {} if timeout is ... else {"timeout": timeout}
        keys = self._keys()
        try:
            return Response(self._attempt(call, keys, limit))
        except ServerRefused as e:
            if not is_session_expired(e):
                raise
            if self._core.revoked:
                raise OutcomeUnknown(e) from e
            fresh = self._renew(keys)
            if not self._core.repeatable(call.line.method):
                raise OutcomeUnknown(e) from e
            return Response(self._attempt(call, fresh, limit))

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)

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
        url, headers, body = self._core.revoke_request(keys)
        try:
            r = self._http.post(url, headers=headers, content=body)
        except httpx.HTTPError as e:
            raise _network(e, f"POST {url}") from e
        if r.status_code != 204:
            raise refusal_of(r.status_code, r.headers, r.content)


class AsyncClient:
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
        self._core = _configure(base_url, client_id, server_key, protocol, retry, ttl_sec, init_path)
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
        private, url, headers, body = self._core.init_request()
        try:
            r = await self._http.post(url, headers=headers, content=body)
        except httpx.HTTPError as e:
            raise _network(e, f"POST {url}") from e
        return self._core.init_answer(private, r.status_code, r.headers, r.content)

    async def _renew(self, failed: p.SessionKeys) -> p.SessionKeys:
        async with self._lock:
            if self._core.keys is failed:
                self._core.keys = await self._init()
            assert self._core.keys is not None
            return self._core.keys

    async def _attempt(self, call: Call, keys: p.SessionKeys, timeout: Any) -> Opened:
        for retried in (False, True):
            a = self._core.seal(call, keys)
            try:
                r = await self._http.request(a.method, a.url, headers=a.headers, content=a.body, **timeout)
            except httpx.HTTPError as e:
                raise _network(e, f"{a.method} {a.url}") from e
            try:
                return self._core.answer(call, a, r.status_code, r.headers, r.content)
            except SealedRefusal as e:
                self._core.after_refusal(e, retried)
        raise AssertionError("unreachable")

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
        timeout: Union[float, httpx.Timeout, None, object] = ...,
    ) -> Response:
        """As ``Client.request``."""
        if self._core.revoked:
            raise RevokedError()
        call = self._core.prepare(
            method, path, content=content, json=json, headers=headers,
            content_type=content_type, idempotency_key=idempotency_key,
        )
        limit: Dict[str, Any] = {} if timeout is ... else {"timeout": timeout}
        keys = await self._keys()
        try:
            return Response(await self._attempt(call, keys, limit))
        except ServerRefused as e:
            if not is_session_expired(e):
                raise
            if self._core.revoked:
                raise OutcomeUnknown(e) from e
            fresh = await self._renew(keys)
            if not self._core.repeatable(call.line.method):
                raise OutcomeUnknown(e) from e
            return Response(await self._attempt(call, fresh, limit))

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Response:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Response:
        return await self.request("PUT", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)

    async def revoke(self) -> None:
        """As ``Client.revoke``."""
        async with self._lock:
            if self._core.revoked:
                return
            self._core.revoked = True
            keys = self._core.keys
        if keys is None:
            return
        url, headers, body = self._core.revoke_request(keys)
        try:
            r = await self._http.post(url, headers=headers, content=body)
        except httpx.HTTPError as e:
            raise _network(e, f"POST {url}") from e
        if r.status_code != 204:
            raise refusal_of(r.status_code, r.headers, r.content)
