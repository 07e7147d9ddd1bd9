"""The non-secret record of who is signed in: who, with which provider, until when.

Secrets (passwords, tokens) never appear here; they live in the OS keyring (see
``app.signin.secrets``). The record is plain JSON so the daemon, the settings gate and the
GUI can all read it without touching the keyring.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ProviderName = Literal["docker", "oidc"]
PROVIDERS: tuple[ProviderName, ...] = ("docker", "oidc")

# Where the session's secrets are kept: the OS keyring, an opted-in 0600 file, or nowhere
# (this run only: the record lives in the runtime folder and is gone after a reboot).
SecretStore = Literal["keyring", "file", "memory"]


@dataclass(frozen=True)
class Session:
    """One signed-in account. Times are seconds since the epoch (UTC)."""

    provider: ProviderName
    user: str
    server: str  # the registry URL (docker) or the issuer URL (oidc)
    signed_in_at: float
    expires_at: float
    refreshed_at: float
    store: SecretStore = "keyring"
    display_name: str = ""
    email: str = ""
    client_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def is_valid(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) < self.expires_at

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at - (now if now is not None else time.time())

    @property
    def remembered(self) -> bool:
        return self.store != "memory"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Session:
        """Parse a record; raises ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError("session record is not a JSON object")
        provider = data.get("provider")
        if provider not in PROVIDERS:
            raise ValueError(f"session record has unknown provider {provider!r}")
        user = data.get("user")
        if not isinstance(user, str) or not user:
            raise ValueError("session record has no user")
        server = data.get("server")
        if not isinstance(server, str):
            raise ValueError("session record has no server")
        times: dict[str, float] = {}
        for key in ("signed_in_at", "expires_at", "refreshed_at"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"session record field {key!r} is not a number")
            times[key] = float(value)
        store = data.get("store", "keyring")
        if store not in ("keyring", "file", "memory"):
            raise ValueError(f"session record has unknown secret store {store!r}")
        extra = data.get("extra", {})
        if not isinstance(extra, dict):
            raise ValueError("session record field 'extra' is not an object")
        return cls(
            provider=provider,
            user=user,
            server=server,
            signed_in_at=times["signed_in_at"],
            expires_at=times["expires_at"],
            refreshed_at=times["refreshed_at"],
            store=store,
            display_name=str(data.get("display_name", "")),
            email=str(data.get("email", "")),
            client_id=str(data.get("client_id", "")),
            extra=extra,
        )
