"""Typed errors: what went wrong, and who can fix it (the README's "Errors")."""

from __future__ import annotations

from typing import Optional


class SessionCryptoError(Exception):
    """Base class of every error the library raises."""


class ConfigurationError(SessionCryptoError):
    """A mistake in the options or the call (a base URL that is not http(s), an
    invalid client id, a key that is not a P-256 public key, a GET with a body, HEAD).
    Nothing was sent: fix the code or the configuration."""


class NetworkError(SessionCryptoError):
    """The request did not reach the server, or no answer came back: its fate is
    unknown. ``timeout`` tells a time limit from other failures."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class ServerRefused(SessionCryptoError):
    """The server refused the request: its ``status``, ``code`` (``CRYPTO_ERROR``,
    ``SESSION_EXPIRED``, ``RATE_LIMITED``, ``SERVICE_UNAVAILABLE``, …), ``body`` and
    ``retry_after`` (seconds). ``sealed``: a v2 refusal authenticated as the server's,
    for this very request, proving it did not run; otherwise anyone on the path could
    have written it."""

    def __init__(
        self,
        status: int,
        code: str,
        body: str,
        retry_after: Optional[int] = None,
        sealed: bool = False,
    ) -> None:
        suffix = " (sealed: the request did not run)" if sealed else ""
        super().__init__(f"the server refused with {status} {code or '(no code)'}{suffix}")
        self.status = status
        self.code = code
        self.body = body
        self.retry_after = retry_after
        self.sealed = sealed


class ClockSkewError(ServerRefused):
    """A request was refused while this machine's clock differs from the server's by
    ``skew_ms`` (by the answer's ``Date``, which is not authenticated): the server's
    timestamp window (±300 s by default) probably refused it. An init or an idempotent
    call was already sent once more with the corrected clock; any other call was not."""

    def __init__(self, refused: ServerRefused, skew_ms: int) -> None:
        super().__init__(refused.status, refused.code, refused.body, refused.retry_after)
        self.skew_ms = skew_ms
        self.args = (f"refused with the clocks {round(skew_ms / 1000)} s apart (server - client)",)


class OutcomeUnknown(SessionCryptoError):
    """The request may or may not have run: the server refused it (``refusal``) in a
    way an attacker on the path can forge after forwarding the request (an
    unauthenticated ``SESSION_EXPIRED``), or sealed a refusal saying it may have run.
    The method is not one the library sends twice by itself; send it again only if
    running it twice is harmless."""

    def __init__(self, refusal: ServerRefused) -> None:
        super().__init__(
            f"outcome unknown: the server answered {refusal.status} "
            f"{refusal.code or '(no code)'}"
        )
        self.refusal = refusal


class ProtocolError(SessionCryptoError):
    """The server's answer broke the protocol. ``reason``: ``confirmation`` (the init
    answer was changed in transit), ``signature`` (not signed by a pinned key),
    ``response`` (a sealed answer that does not open for this request: forged,
    replayed, another request's, stamped outside the window) or ``format``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RevokedError(SessionCryptoError):
    """The session was revoked (``revoke()``): connect again for a new one."""

    def __init__(self) -> None:
        super().__init__("this session was revoked; connect again for a new one")
