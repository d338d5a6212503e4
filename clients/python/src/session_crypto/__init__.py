"""session-crypto client: an encrypted, replay-proof channel to a session-crypto
server, built into httpx (sync and async). See README.md and docs/PROTOCOL.md.

The protocol core (``session_crypto.protocol``) needs only ``cryptography``; the
clients need httpx: ``pip install session-crypto-client[httpx]``."""

from typing import TYPE_CHECKING, Any

from .errors import (
    ClockSkewError,
    ConfigurationError,
    NetworkError,
    OutcomeUnknown,
    ProtocolError,
    RevokedError,
    ServerRefused,
    SessionCryptoError,
)

from .response import Response

if TYPE_CHECKING:
    from .client import AsyncClient, Client

__all__ = [
    "AsyncClient",
    "ClockSkewError",
    "Client",
    "ConfigurationError",
    "NetworkError",
    "OutcomeUnknown",
    "ProtocolError",
    "Response",
    "RevokedError",
    "ServerRefused",
    "SessionCryptoError",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("AsyncClient", "Client"):
        try:
            from . import client
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the clients need httpx: pip install session-crypto-client[httpx]"
            ) from e
        return getattr(client, name)
    raise AttributeError(name)
