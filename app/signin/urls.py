"""Where secrets may be sent: HTTPS, or plain HTTP on loopback only; Docker Hub's aliases."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from app.signin.errors import ConfigurationError

DOCKER_HUB_REGISTRY = "https://registry-1.docker.io"
_DOCKER_HUB_ALIASES = {
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
    "hub.docker.com",
}


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_safe_url(url: str, what: str) -> str:
    """Return ``url`` if credentials may be sent there, else raise ConfigurationError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"The {what} {url!r} is not an http(s) URL. Give a full URL such as https://host."
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"The {what} {url!r} uses plain http, which would send your secrets unencrypted. "
            "Use https:// (plain http is allowed only on this machine's loopback)."
        )
    return url


def normalize_registry(registry: str) -> str:
    """``docker.io``, ``host:5000`` or a full URL -> the registry's base URL, without /v2/."""
    text = registry.strip()
    if not text:
        return DOCKER_HUB_REGISTRY
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    if (parts.hostname or "") in _DOCKER_HUB_ALIASES:
        return DOCKER_HUB_REGISTRY
    base = f"{parts.scheme}://{parts.netloc}"
    return require_safe_url(base, "registry address")
