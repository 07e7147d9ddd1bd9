"""OpenID Connect sign-in for organisations, with Authlib doing the OAuth 2.0 work.

- ``browser_sign_in``: authorization code with PKCE (S256) through the system browser and a
  loopback redirect on an ephemeral port (RFC 8252).
- ``device_sign_in``: the device authorization grant (RFC 8628) for machines with no browser;
  ``on_code`` receives the user code and verification URI before polling starts.
- ``refresh``: a refresh-token grant; ``revoke``: RFC 7009 revocation, best effort.

Every ID token is validated (``app.signin.id_token``). Every exchange with the provider is
bounded by ``timeout``; the browser and device waits by their own limits. All are plain
coroutines: cancel the task to cancel the flow (or use ``app.signin.cancel.run_blocking``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError

from app.signin import http
from app.signin.errors import (
    AccessDenied,
    ConfigurationError,
    CredentialsRefused,
    FlowExpired,
    ServerUnavailable,
)
from app.signin.id_token import validate_id_token
from app.signin.loopback import LoopbackRedirect
from app.signin.oidc_discovery import WHAT, ProviderMetadata, discover, fetch_jwks

with warnings.catch_warnings():
    # Authlib 1.9 prefers the httpx2 package and warns when it falls back to httpx.
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

DEFAULT_SCOPE = "openid profile email offline_access"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
BROWSER_WAIT = 300.0


@dataclass(frozen=True)
class OidcResult:
    """A successful sign-in or refresh: the tokens and the validated ID token's claims."""

    issuer: str
    client_id: str
    claims: dict[str, Any]
    access_token: str
    refresh_token: str | None
    id_token: str
    expires_at: float

    @property
    def user(self) -> str:
        for key in ("preferred_username", "email", "sub"):
            value = self.claims.get(key)
            if isinstance(value, str) and value:
                return value
        return str(self.claims.get("sub", ""))


@dataclass(frozen=True)
class DeviceCode:
    """What the person needs to approve a device sign-in on another device."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def _client(client_id: str, timeout: float, **kwargs: Any) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=client_id,
        token_endpoint_auth_method="none",
        timeout=timeout,
        trust_env=False,
        **kwargs,
    )


def _oauth_error(exc: OAuthError) -> Exception:
    error = exc.error or ""
    detail = f" ({exc.description})" if exc.description else ""
    if error == "access_denied":
        return AccessDenied(f"Sign-in was declined at the provider{detail}.")
    if error == "expired_token":
        return FlowExpired(
            "The device sign-in code expired before it was approved. Run the sign-in again."
        )
    if error in ("invalid_client", "unauthorized_client"):
        return ConfigurationError(
            f"The provider does not accept hostnet's client ID{detail}. Check the OidcClientId "
            "setting with your administrator."
        )
    return CredentialsRefused(f"The provider refused the sign-in: {error}{detail}.")


async def _call(what: str, url: str, coro: Any, timeout: float) -> Any:
    try:
        return await http.bounded(what, url, coro, timeout)
    except OAuthError as exc:
        raise _oauth_error(exc) from None


async def _finish(
    metadata: ProviderMetadata,
    client_id: str,
    token: dict[str, Any],
    nonce: str | None,
    timeout: float,
    previous_id_token_claims: dict[str, Any] | None = None,
) -> OidcResult:
    id_token = token.get("id_token")
    access_token = token.get("access_token")
    if not isinstance(access_token, str):
        raise ServerUnavailable(f"{WHAT}: the provider sent no access token.")
    if isinstance(id_token, str):
        jwks = await fetch_jwks(metadata, timeout)
        claims = validate_id_token(
            id_token,
            jwks,
            issuer=metadata.issuer,
            client_id=client_id,
            nonce=nonce,
            algorithms=metadata.id_token_signing_alg_values_supported,
        )
        if previous_id_token_claims and claims.get("sub") != previous_id_token_claims.get("sub"):
            raise CredentialsRefused("The refreshed ID token is for a different account.")
    elif previous_id_token_claims is not None:
        claims, id_token = previous_id_token_claims, ""  # a refresh may omit the ID token
    else:
        raise ServerUnavailable(f"{WHAT}: the provider sent no ID token (is 'openid' allowed?).")
    expires_at = token.get("expires_at")
    if not isinstance(expires_at, int | float):
        expires_at = float(claims.get("exp", time.time() + 300))
    refresh_token = token.get("refresh_token")
    return OidcResult(
        issuer=metadata.issuer,
        client_id=client_id,
        claims=claims,
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) else None,
        id_token=id_token,
        expires_at=float(expires_at),
    )


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value


def _require_client_id(client_id: str) -> str:
    if not client_id.strip():
        raise ConfigurationError(
            "No OpenID Connect client ID is set. Set it with `hostnet settings set OidcClientId "
            "ID` or pass --client-id ID (your administrator registers hostnet and gives you it)."
        )
    return client_id.strip()


async def exchange_code(
    metadata: ProviderMetadata,
    client_id: str,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    nonce: str | None,
    timeout: float = http.DEFAULT_TIMEOUT,
) -> OidcResult:
    """Trade an authorization code (with its PKCE verifier) for tokens, and validate them."""
    async with _client(client_id, timeout, redirect_uri=redirect_uri) as client:
        token = await _call(
            WHAT,
            metadata.token_endpoint,
            client.fetch_token(
                metadata.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
            ),
            timeout,
        )
    return await _finish(metadata, client_id, dict(token), nonce, timeout)


async def browser_sign_in(
    issuer: str,
    client_id: str,
    open_browser: Callable[[str], object],
    *,
    scope: str = DEFAULT_SCOPE,
    timeout: float = http.DEFAULT_TIMEOUT,
    wait: float = BROWSER_WAIT,
) -> OidcResult:
    """Authorization code + PKCE: ``open_browser(url)`` shows the provider's sign-in page."""
    client_id = _require_client_id(client_id)
    metadata = await discover(issuer, timeout)
    if metadata.code_challenge_methods_supported and (
        "S256" not in metadata.code_challenge_methods_supported
    ):
        raise ConfigurationError(f"{metadata.issuer} does not support PKCE with S256.")
    state = generate_token(32)
    nonce = generate_token(32)
    code_verifier = generate_token(64)
    async with LoopbackRedirect(state) as redirect:
        async with _client(
            client_id, timeout, scope=scope, redirect_uri=redirect.uri, code_challenge_method="S256"
        ) as client:
            url, _ = client.create_authorization_url(
                metadata.authorization_endpoint,
                state=state,
                code_verifier=code_verifier,
                nonce=nonce,
            )
        await _maybe_await(open_browser(url))
        try:
            response = await asyncio.wait_for(redirect.wait(), wait)
        except TimeoutError:
            raise FlowExpired(
                f"The browser sign-in was not finished within {wait:g} s. Run it again, or use "
                "`hostnet login --device` on a machine without a browser."
            ) from None
    if "error" in response:
        raise _oauth_error(OAuthError(response["error"], response.get("error_description", "")))
    returned_issuer = response.get("iss")
    if returned_issuer is not None and returned_issuer.rstrip("/") != metadata.issuer.rstrip("/"):
        raise CredentialsRefused(
            f"The sign-in answer came from {returned_issuer!r}, not {metadata.issuer!r} "
            "(RFC 9207 mix-up protection). Try again."
        )
    code = response.get("code")
    if not code:
        raise ServerUnavailable(f"{WHAT}: the provider's redirect carried no code.")
    return await exchange_code(
        metadata,
        client_id,
        code=code,
        redirect_uri=redirect.uri,
        code_verifier=code_verifier,
        nonce=nonce,
        timeout=timeout,
    )


async def device_sign_in(
    issuer: str,
    client_id: str,
    on_code: Callable[[DeviceCode], object],
    *,
    scope: str = DEFAULT_SCOPE,
    timeout: float = http.DEFAULT_TIMEOUT,
) -> OidcResult:
    """RFC 8628: show ``on_code(DeviceCode)`` to the person, then poll until approved."""
    client_id = _require_client_id(client_id)
    metadata = await discover(issuer, timeout)
    endpoint = metadata.device_authorization_endpoint
    if not endpoint:
        raise ConfigurationError(
            f"{metadata.issuer} does not offer device sign-in. Sign in with a browser instead "
            "(`hostnet login --provider oidc` without --device)."
        )
    async with _client(client_id, timeout, scope=scope) as client:
        answer = await _call(
            WHAT,
            endpoint,
            client.request(
                "POST",
                endpoint,
                data={"client_id": client_id, "scope": scope},
                withhold_token=True,
            ),
            timeout,
        )
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code != 200 or not isinstance(body, dict) or "device_code" not in body:
            if isinstance(body, dict) and "error" in body:
                raise _oauth_error(OAuthError(body["error"], body.get("error_description", "")))
            raise ServerUnavailable(
                f"{WHAT}: the device authorization request failed (HTTP {answer.status_code})."
            )
        code = DeviceCode(
            user_code=str(body["user_code"]),
            verification_uri=str(body.get("verification_uri") or body.get("verification_url")),
            verification_uri_complete=body.get("verification_uri_complete"),
            expires_in=float(body.get("expires_in", 600)),
            interval=float(body.get("interval", 5)),
        )
        await _maybe_await(on_code(code))
        interval = max(code.interval, 0.1)
        deadline = time.monotonic() + code.expires_in
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() > deadline:
                raise FlowExpired(
                    "The device sign-in code expired before it was approved. Run the sign-in "
                    "again and approve it within the time shown."
                )
            try:
                token = await http.bounded(
                    WHAT,
                    metadata.token_endpoint,
                    client.fetch_token(
                        metadata.token_endpoint,
                        grant_type=DEVICE_GRANT,
                        device_code=str(body["device_code"]),
                    ),
                    timeout,
                )
            except OAuthError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += 5
                    continue
                raise _oauth_error(exc) from None
            return await _finish(metadata, client_id, dict(token), None, timeout)


async def refresh(
    issuer: str,
    client_id: str,
    refresh_token: str,
    previous_claims: dict[str, Any],
    *,
    timeout: float = http.DEFAULT_TIMEOUT,
) -> OidcResult:
    """A refresh-token grant; CredentialsRefused when the token was revoked or expired."""
    metadata = await discover(issuer, timeout)
    async with _client(client_id, timeout) as client:
        token = await _call(
            WHAT,
            metadata.token_endpoint,
            client.refresh_token(metadata.token_endpoint, refresh_token=refresh_token),
            timeout,
        )
    token = dict(token)
    token.setdefault("refresh_token", refresh_token)  # providers that do not rotate keep it
    return await _finish(metadata, client_id, token, None, timeout, previous_claims)


async def revoke(
    issuer: str, client_id: str, token: str, *, timeout: float = http.DEFAULT_TIMEOUT
) -> bool:
    """Revoke a refresh token at the provider (RFC 7009); False if there is no endpoint."""
    metadata = await discover(issuer, timeout)
    if not metadata.revocation_endpoint:
        return False
    async with _client(client_id, timeout) as client:
        response = await _call(
            WHAT,
            metadata.revocation_endpoint,
            client.revoke_token(
                metadata.revocation_endpoint, token=token, token_type_hint="refresh_token"
            ),
            timeout,
        )
    return bool(getattr(response, "status_code", 200) == 200)
