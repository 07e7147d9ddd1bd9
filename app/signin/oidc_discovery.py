"""The OpenID Connect discovery document (``/.well-known/openid-configuration``) and the JWKS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.signin import http
from app.signin.errors import ConfigurationError, ServerUnavailable
from app.signin.urls import require_safe_url

WHAT = "OpenID Connect sign-in"


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    device_authorization_endpoint: str | None
    revocation_endpoint: str | None
    id_token_signing_alg_values_supported: tuple[str, ...]
    code_challenge_methods_supported: tuple[str, ...]
    raw: dict[str, Any]


def normalize_issuer(issuer: str) -> str:
    text = issuer.strip()
    if not text:
        raise ConfigurationError(
            "No OpenID Connect issuer is set. Set it with `hostnet settings set OidcIssuer URL` "
            "or pass --issuer URL (your administrator can give you the URL)."
        )
    return require_safe_url(text, "OpenID Connect issuer").rstrip("/") or text


async def _get_json(url: str, timeout: float) -> dict[str, Any]:
    async with http.client(timeout) as client:
        response = await http.bounded(WHAT, url, client.get(url), timeout)
    if response.status_code != 200:
        raise ServerUnavailable(
            f"{WHAT}: {url} answered HTTP {response.status_code}. Check the issuer URL."
        )
    try:
        body = response.json()
    except ValueError:
        raise ServerUnavailable(f"{WHAT}: {url} did not answer with JSON.") from None
    if not isinstance(body, dict):
        raise ServerUnavailable(f"{WHAT}: {url} did not answer with a JSON object.")
    return body


async def discover(issuer: str, timeout: float = http.DEFAULT_TIMEOUT) -> ProviderMetadata:
    """Fetch and check the issuer's discovery document."""
    base = normalize_issuer(issuer)
    url = f"{base}/.well-known/openid-configuration"
    doc = await _get_json(url, timeout)
    if str(doc.get("issuer", "")).rstrip("/") != base:
        raise ConfigurationError(
            f"The discovery document at {url} names the issuer {doc.get('issuer')!r}, not "
            f"{base!r}. Use exactly the issuer URL your provider publishes."
        )
    required = ("authorization_endpoint", "token_endpoint", "jwks_uri")
    missing = [key for key in required if not doc.get(key)]
    if missing:
        raise ServerUnavailable(f"{WHAT}: the discovery document lacks {', '.join(missing)}.")
    for key in required:
        require_safe_url(str(doc[key]), f"provider's {key.replace('_', ' ')}")
    return ProviderMetadata(
        issuer=str(doc["issuer"]),
        authorization_endpoint=str(doc["authorization_endpoint"]),
        token_endpoint=str(doc["token_endpoint"]),
        jwks_uri=str(doc["jwks_uri"]),
        device_authorization_endpoint=doc.get("device_authorization_endpoint"),
        revocation_endpoint=doc.get("revocation_endpoint"),
        id_token_signing_alg_values_supported=tuple(
            doc.get("id_token_signing_alg_values_supported") or ("RS256",)
        ),
        code_challenge_methods_supported=tuple(doc.get("code_challenge_methods_supported") or ()),
        raw=doc,
    )


async def fetch_jwks(metadata: ProviderMetadata, timeout: float) -> dict[str, Any]:
    return await _get_json(metadata.jwks_uri, timeout)
