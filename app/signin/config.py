"""Which provider and servers to sign in with: the settings (admin-lockable), then overrides.

Keys: ``SignInProvider``, ``DockerRegistry``, ``OidcIssuer``, ``OidcClientId`` in
settings-store.json; an administrator can lock them in admin-settings.json. A command-line
override of a locked value is refused with a message naming the lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.paths import Paths
from app.settings.store import SettingsStore
from app.signin.errors import ConfigurationError
from app.signin.urls import DOCKER_HUB_REGISTRY

DEFAULTS: dict[str, Any] = {
    "SignInProvider": "docker",
    "DockerRegistry": DOCKER_HUB_REGISTRY,
    "OidcIssuer": "",
    "OidcClientId": "",
}


@dataclass(frozen=True)
class SignInConfig:
    provider: str
    registry: str
    issuer: str
    client_id: str
    locked: frozenset[str]


def _settings(paths: Paths) -> tuple[dict[str, Any], frozenset[str]]:
    effective = SettingsStore(paths).load()
    values = {key: effective.get(key, default) for key, default in DEFAULTS.items()}
    locked = frozenset(key for key in DEFAULTS if key in effective and effective.locked(key))
    return values, locked


def load_config(
    paths: Paths,
    *,
    provider: str | None = None,
    registry: str | None = None,
    issuer: str | None = None,
    client_id: str | None = None,
) -> SignInConfig:
    values, locked = _settings(paths)
    overrides = {
        "SignInProvider": provider,
        "DockerRegistry": registry,
        "OidcIssuer": issuer,
        "OidcClientId": client_id,
    }
    for key, value in overrides.items():
        if value is None:
            continue
        if key in locked and value != values[key]:
            raise ConfigurationError(
                f"Your administrator has locked {key} to {values[key]!r}, so {value!r} cannot "
                f"be used. Leave the option out to sign in with {values[key]!r}."
            )
        values[key] = value
    if values["SignInProvider"] not in ("docker", "oidc"):
        raise ConfigurationError(
            f"Unknown sign-in provider {values['SignInProvider']!r}: use docker or oidc."
        )
    return SignInConfig(
        provider=str(values["SignInProvider"]),
        registry=str(values["DockerRegistry"] or DOCKER_HUB_REGISTRY),
        issuer=str(values["OidcIssuer"] or ""),
        client_id=str(values["OidcClientId"] or ""),
        locked=locked,
    )
