"""The same session on ``requests`` (``pip install session-crypto-client[requests]``):

>>> from session_crypto.requests import Client                 # doctest: +SKIP
>>> with Client("http://127.0.0.1:3000", "MY_APP") as c:       # doctest: +SKIP
...     c.post("/api/orders", json={"item": "book"}).json()
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple, Union

import requests as http

from .calls import DEFAULT
from .errors import NetworkError
from .sync import UNSET, SyncSession, configure


class Client(SyncSession):
    """A session with a session-crypto server over a ``requests.Session`` (its
    connection pool, adapters, proxies). Thread-safe as far as the session given is."""

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
        timeout: Union[float, Tuple[float, float], None] = 10.0,
        session: Optional[http.Session] = None,
    ) -> None:
        super().__init__(configure(base_url, client_id, server_key, protocol, retry, ttl_sec, init_path))
        self._http = session or http.Session()
        self._timeout = timeout

    def __enter__(self) -> "Client":
        return self

    def close(self) -> None:
        self._http.close()

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: Any
    ) -> Tuple[int, Mapping[str, str], bytes]:
        limit = self._timeout if timeout is DEFAULT else timeout
        try:
            r = self._http.request(method, url, headers=dict(headers), data=body, timeout=limit)
        except http.exceptions.RequestException as e:
            raise NetworkError(f"{method} {url}: {e}", timeout=isinstance(e, http.exceptions.Timeout)) from e
        return r.status_code, r.headers, r.content
