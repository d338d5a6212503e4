"""The clients' exchanges without I/O: an init, an attempt of a call, a revocation —
each a generator that yields the requests it sends, takes their answers back and
returns its result — and the two ways to run one, blocking (``drive``) or async
(``drive_async``). What may be sent twice is decided here once, for every client."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Generator, Mapping, Tuple, TypeVar

from . import protocol as p
from .calls import DEFAULT, Call, Opened, now_ms, refusal_of
from .core import Core

T = TypeVar("T")
#: One request on the wire: method, URL, headers, body, timeout (``DEFAULT``: the client's).
Wire = Tuple[str, str, Mapping[str, str], bytes, Any]
#: Its answer: status, headers, body.
Answer = Tuple[int, Mapping[str, str], bytes]
#: The requests of an exchange, each answer sent back in, and its result at the end.
Flow = Generator[Wire, Answer, T]
#: A client's ``_send``: one request on the wire (``NetworkError`` when no answer comes).
Send = Callable[[str, str, Mapping[str, str], bytes, Any], Answer]
SendAsync = Callable[[str, str, Mapping[str, str], bytes, Any], Awaitable[Answer]]


def init(core: Core) -> Flow[p.SessionKeys]:
    """An init; once more with the clock an unsealed refusal's ``Date`` gives
    (``Core.settle_init``)."""
    for retried in (False, True):
        private, url, headers, body = core.init_request()
        sent = now_ms()
        status, h, content = yield "POST", url, headers, body.encode(), DEFAULT
        keys = core.settle_init(private, status, h, content, sent, retried)
        if keys is not None:
            return keys
    raise AssertionError("unreachable: the second refusal raises")


def attempt(core: Core, call: Call, keys: p.SessionKeys, timeout: Any) -> Flow[Opened]:
    """``call`` on ``keys``; once more where its refusal allows (``Core.settle``)."""
    for retried in (False, True):
        a = core.seal(call, keys)
        sent = now_ms()
        status, h, content = yield a.method, a.url, a.headers, a.body, timeout
        opened = core.settle(call, a, status, h, content, sent, retried)
        if opened is not None:
            return opened
    raise AssertionError("unreachable: the second refusal raises")


def revoke(core: Core, keys: p.SessionKeys) -> Flow[None]:
    """``POST /session/revoke``: any answer but a 204 is the server's refusal."""
    url, headers, body = core.revoke_request(keys)
    status, h, content = yield "POST", url, headers, body, DEFAULT
    if status != 204:
        raise refusal_of(status, h, content)


def drive(flow: Flow[T], send: Send) -> T:
    """Runs ``flow``, each request through blocking ``send``."""
    try:
        wire = next(flow)
        while True:
            wire = flow.send(send(*wire))
    except StopIteration as done:
        result: T = done.value
        return result


async def drive_async(flow: Flow[T], send: SendAsync) -> T:
    """Runs ``flow``, each request through async ``send``."""
    try:
        wire = next(flow)
        while True:
            wire = flow.send(await send(*wire))
    except StopIteration as done:
        result: T = done.value
        return result
