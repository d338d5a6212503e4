"""What a call is on the wire, without I/O: its target as a URL parser sends it, the
call and each of its attempts, the opened answer, and the server's refusals read."""

from __future__ import annotations

import json as jsonlib
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import protocol as p
from .errors import ServerRefused

#: ``timeout`` left out: the client's default.
DEFAULT: Any = object()

Headers = Union[Mapping[str, str], Sequence[Tuple[str, str]], None]


def now_ms() -> int:
    return int(time.time() * 1000)


def _encode(text: str, unsafe: bytes) -> str:
    out = []
    for b in text.encode("utf-8"):
        out.append(f"%{b:02X}" if b <= 0x20 or b >= 0x7F or b in unsafe else chr(b))
    return "".join(out)


def wire_target(path: str) -> str:
    """``path`` as a URL parser sends it (dot segments resolved, ``%2e`` forms too;
    spaces and non-ASCII percent-encoded; the fragment dropped) — what the Rust and
    TypeScript libraries send and v2-bind for the same path."""
    path = path.split("#", 1)[0]
    path, sep, query = path.partition("?")
    parts = path.replace("\\", "/").split("/")[1:]
    segs: List[str] = []
    for i, s in enumerate(parts):
        last = i + 1 == len(parts)
        low = s.lower()
        if low in ("..", ".%2e", "%2e.", "%2e%2e"):
            if segs:
                segs.pop()
            if last:
                segs.append("")
        elif low in (".", "%2e"):
            if last:
                segs.append("")
        else:
            segs.append(s)
    out = "".join("/" + _encode(s, b' "#<>?`{}') for s in segs) or "/"
    return out + ("?" + _encode(query, b" \"#<>'") if sep else "")


@dataclass
class Call:
    """One call, the same on every attempt."""

    url: str
    line: p.RequestLine
    headers: Dict[str, str]
    plaintext: bytes
    call_key: str
    inner_type: bool


@dataclass
class Attempt:
    """One attempt of a call: what goes on the wire, and what checks its answer."""

    method: str
    url: str
    headers: Dict[str, str]
    body: bytes
    nonce: str
    stamped_ms: int
    keys: p.SessionKeys


@dataclass
class Opened:
    """A decrypted, authenticated answer."""

    status_code: int
    headers: Dict[str, str]
    content: bytes


class SealedRefusal(Exception):
    """A v2 refusal opened (authenticated): the refusal, whether it ran, the server time."""

    def __init__(self, refusal: ServerRefused, executed: bool, server_ms: int, stamped_ms: int) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal
        self.executed = executed
        self.server_ms = server_ms
        self.stamped_ms = stamped_ms


def retry_after_of(h: Mapping[str, str]) -> Optional[int]:
    v = {k.lower(): x for k, x in h.items()}.get("retry-after", "")
    return int(v) if v.isdigit() and int(v) > 0 else None


def refusal_of(status: int, headers: Mapping[str, str], body: bytes) -> ServerRefused:
    """The server's own (unsealed) refusal."""
    text = body.decode("utf-8", "replace")
    code = ""
    try:
        parsed = jsonlib.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            code = parsed["error"]
    except ValueError:
        pass
    return ServerRefused(status, code, text, retry_after_of(headers))


def is_session_expired(e: ServerRefused) -> bool:
    return e.status == 401 and e.code == "SESSION_EXPIRED" and not e.sealed
