"""The decrypted answer, shaped like an httpx (or requests) response."""

from __future__ import annotations

import json as jsonlib
from typing import Any, Dict, Iterator, Mapping


class Headers(Mapping[str, str]):
    """Response headers: a read-only mapping whose names are case-insensitive."""

    def __init__(self, items: Mapping[str, str]) -> None:
        self._items: Dict[str, str] = {k.lower(): v for k, v in items.items()}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Response:
    """A decrypted, authenticated answer: on a gateway route its ``status_code`` and
    ``headers`` are the upstream's (a sealed 404 is a response, not an error), and
    ``Content-Type`` is the decrypted body's."""

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = Headers(headers)
        self.content = content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def ok(self) -> bool:
        """As requests' ``ok``: below 400."""
        return self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"
