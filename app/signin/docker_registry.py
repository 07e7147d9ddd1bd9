"""Docker account sign-in: check a username and password (or access token) like ``docker login``.

``docker login`` asks the registry ``GET /v2/``; the 401 answer's challenge says how to
authenticate. ``Basic``: retry with the credentials. ``Bearer realm=...,service=...,scope=...``:
ask the realm (the token server) for a token with the credentials, then retry with the token.
A 200 at the end means the registry accepted the account.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx

from app.signin import http
from app.signin.errors import ConfigurationError, CredentialsRefused, ServerUnavailable
from app.signin.urls import normalize_registry, require_safe_url

WHAT = "Docker sign-in"
_AUTH_PARAM = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str]


@dataclass(frozen=True)
class DockerIdentity:
    """A registry accepted these credentials."""

    username: str
    registry: str
    scheme: str  # how the registry authenticated: "basic" or "bearer"
    checked_at: float


def parse_challenge(header: str) -> Challenge:
    """Parse one ``WWW-Authenticate`` challenge, e.g. ``Bearer realm="...",service="..."``."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _AUTH_PARAM.finditer(rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return Challenge(scheme=scheme.lower(), params=params)


def _refused(registry: str) -> CredentialsRefused:
    return CredentialsRefused(
        f"{registry} refused the username or password/access token. Check them "
        "(for Docker Hub with two-factor authentication, use a personal access token)."
    )


def _unexpected(registry: str, response: httpx.Response) -> ServerUnavailable:
    return ServerUnavailable(
        f"{WHAT}: {http.host_of(registry)} answered HTTP {response.status_code} "
        "where a registry answers 200 or 401. Check the registry address or try again later."
    )


async def _fetch_bearer_token(
    client: httpx.AsyncClient,
    registry: str,
    challenge: Challenge,
    username: str,
    secret: str,
    timeout: float,
) -> str:
    realm = challenge.params.get("realm")
    if not realm:
        raise ServerUnavailable(f"{WHAT}: {registry} asked for a token but named no token server.")
    require_safe_url(realm, "registry's token server")
    query = {"account": username}
    for key in ("service", "scope"):
        if challenge.params.get(key):
            query[key] = challenge.params[key]
    response = await http.bounded(
        WHAT,
        realm,
        client.get(realm, params=query, auth=httpx.BasicAuth(username, secret)),
        timeout,
    )
    if response.status_code in (401, 403):
        raise _refused(registry)
    if response.status_code != 200:
        raise _unexpected(realm, response)
    try:
        body = response.json()
    except ValueError:
        raise ServerUnavailable(f"{WHAT}: the token server {realm} sent no JSON.") from None
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ServerUnavailable(f"{WHAT}: the token server {realm} sent no token.")
    return token


async def verify_docker_credentials(
    username: str,
    secret: str,
    registry: str = "",
    timeout: float = http.DEFAULT_TIMEOUT,
) -> DockerIdentity:
    """Check the credentials against the registry; raise CredentialsRefused, ServerUnavailable..."""
    if not username or not secret:
        raise CredentialsRefused("A Docker sign-in needs both a username and a password or token.")
    base = normalize_registry(registry)
    ping = f"{base}/v2/"
    async with http.client(timeout) as client:
        first = await http.bounded(WHAT, ping, client.get(ping), timeout)
        if first.status_code == 200:
            raise ConfigurationError(
                f"{base} lets anyone in without signing in, so it cannot check an account. "
                "Choose a registry that requires sign-in (the default is Docker Hub)."
            )
        if first.status_code != 401:
            raise _unexpected(base, first)
        header = first.headers.get("www-authenticate", "")
        challenge = parse_challenge(header)
        if challenge.scheme == "basic":
            auth: httpx.Auth = httpx.BasicAuth(username, secret)
        elif challenge.scheme == "bearer":
            token = await _fetch_bearer_token(client, base, challenge, username, secret, timeout)
            auth = _BearerAuth(token)
        else:
            raise ServerUnavailable(
                f"{WHAT}: {base} asked for an unknown authentication scheme "
                f"{challenge.scheme or '(none)'!r}; hostnet understands Basic and Bearer."
            )
        second = await http.bounded(WHAT, ping, client.get(ping, auth=auth), timeout)
        if second.status_code in (401, 403):
            raise _refused(base)
        if second.status_code != 200:
            raise _unexpected(base, second)
    return DockerIdentity(
        username=username, registry=base, scheme=challenge.scheme, checked_at=time.time()
    )


class _BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
