"""The challenge-response MAC: HMAC-SHA256 over a domain-separated handshake transcript."""

from __future__ import annotations

import hashlib
import hmac

from proxy.wire.messages import PURPOSES, ROLES, Purpose, Role

_LABEL = b"hostnet wire auth\x00"


def transcript(
    *, version: int, purpose: Purpose, sender: Role, daemon_nonce: bytes, agent_nonce: bytes
) -> bytes:
    """The bytes a side's Auth MAC covers.

    Fixed-width fields only, so no two different handshakes share a transcript. The sender's
    role is in it, so a MAC cannot be reflected back to the side that made it; both fresh nonces
    are in it, so a recorded MAC is useless in another connection.
    """
    receiver: Role = "agent" if sender == "daemon" else "daemon"
    return b"".join(
        (
            _LABEL,
            version.to_bytes(2, "big"),
            bytes(
                (PURPOSES.index(purpose) + 1, ROLES.index(sender) + 1, ROLES.index(receiver) + 1)
            ),
            daemon_nonce,
            agent_nonce,
        )
    )


def compute_mac(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def verify_mac(secret: bytes, message: bytes, mac: bytes) -> bool:
    """Constant-time comparison of `mac` with the expected MAC of `message`."""
    return hmac.compare_digest(compute_mac(secret, message), mac)
