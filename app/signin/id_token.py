"""ID token validation (OpenID Connect Core 3.1.3.7): signature from the JWKS, then issuer,
audience, authorized party, expiry, issued-at and nonce. joserfc does the JOSE work."""

from __future__ import annotations

import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app.signin.errors import TokenInvalid

# asymmetric algorithms only: a public client has no secret to check an HMAC with
SAFE_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
)
LEEWAY = 60


def validate_id_token(
    id_token: str,
    jwks: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    algorithms: tuple[str, ...] = SAFE_ALGORITHMS,
    now: float | None = None,
    leeway: int = LEEWAY,
) -> dict[str, Any]:
    """The token's claims if it is valid for this client now; TokenInvalid says why not."""
    allowed = [alg for alg in algorithms if alg in SAFE_ALGORITHMS] or list(SAFE_ALGORITHMS)
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        token = jwt.decode(id_token, keys, algorithms=allowed)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise TokenInvalid(
            f"The ID token's signature does not verify against the provider's keys ({exc}). "
            "Sign in again; if it persists, the issuer setting may point at the wrong provider."
        ) from None
    claims = dict(token.claims)
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "sub": {"essential": True},
        "aud": {"essential": True, "value": client_id},
        "exp": {"essential": True},
        "iat": {"essential": True},
    }
    if nonce is not None:
        options["nonce"] = {"essential": True, "value": nonce}
    at = int(now if now is not None else time.time())
    registry = jwt.JWTClaimsRegistry(now=at, leeway=leeway, **options)
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise TokenInvalid(_explain(exc, claims, issuer, client_id)) from None
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
        raise TokenInvalid(
            "The ID token is meant for several clients and does not name hostnet's client ID "
            "as its authorized party (azp). Check the client ID setting."
        )
    return claims


def _explain(exc: JoseError, claims: dict[str, Any], issuer: str, client_id: str) -> str:
    text = str(exc)
    if "iss" in text:
        return (
            f"The ID token was issued by {claims.get('iss')!r}, not the configured issuer "
            f"{issuer!r}. Check the OidcIssuer setting."
        )
    if "aud" in text:
        return (
            f"The ID token is for {claims.get('aud')!r}, not hostnet's client ID {client_id!r}. "
            "Check the OidcClientId setting."
        )
    if "exp" in text:
        return "The ID token has expired. Sign in again (and check this computer's clock)."
    if "nonce" in text:
        return "The ID token's nonce does not match this sign-in (a replayed token?). Try again."
    return f"The ID token is not valid ({text}). Sign in again."
