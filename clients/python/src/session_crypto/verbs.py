"""``get``, ``post``, ``put``, ``patch`` and ``delete``, each one ``request``, the same on
every client: the blocking ones answer a ``Response``, the async one an awaitable of it."""

from __future__ import annotations

from typing import Any, Dict, Generic, TypeVar

R = TypeVar("R")


class Verbs(Generic[R]):
    def _call(self, method: str, path: str, kw: Dict[str, Any]) -> R:
        """``self.request(method, path, **kw)``."""
        raise NotImplementedError

    def get(self, path: str, **kw: Any) -> R:
        return self._call("GET", path, kw)

    def post(self, path: str, **kw: Any) -> R:
        return self._call("POST", path, kw)

    def put(self, path: str, **kw: Any) -> R:
        return self._call("PUT", path, kw)

    def patch(self, path: str, **kw: Any) -> R:
        return self._call("PATCH", path, kw)

    def delete(self, path: str, **kw: Any) -> R:
        return self._call("DELETE", path, kw)
