"""How the docker CLI names a registry, and whether two names mean the same one."""

from __future__ import annotations

from urllib.parse import urlsplit

from app.signin.urls import DOCKER_HUB_REGISTRY, normalize_registry

DOCKER_HUB_CLI_NAME = "https://index.docker.io/v1/"
"""Docker Hub's name in config.json and in what the CLI asks credential helpers."""


def registry_key(name: str) -> str:
    """``host[:port]`` for any spelling (URL, bare host, Docker Hub alias)."""
    text = name.strip()
    if "://" not in text:
        text = f"https://{text}"
    netloc = urlsplit(text).netloc.lower()
    if not netloc or normalize_registry(netloc) == DOCKER_HUB_REGISTRY:
        return "docker.io"
    return netloc


def cli_name(registry_url: str) -> str:
    """The key the docker CLI looks up in ``credHelpers`` for the registry at ``registry_url``."""
    key = registry_key(registry_url)
    return DOCKER_HUB_CLI_NAME if key == "docker.io" else key
