"""Parsing registry challenges, registry addresses and refresh timing."""

from __future__ import annotations

import pytest

from app.signin.docker_registry import parse_challenge
from app.signin.errors import ConfigurationError
from app.signin.manager import refresh_due, refresh_margin
from app.signin.session import Session
from app.signin.urls import DOCKER_HUB_REGISTRY, normalize_registry


def test_bearer_challenge_with_quoted_commas() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:a/b:pull,push"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:a/b:pull,push",
    }


def test_basic_challenge() -> None:
    assert parse_challenge('Basic realm="hostnet-test"').scheme == "basic"


@pytest.mark.parametrize(
    "name", ["", "docker.io", "index.docker.io", "https://index.docker.io/v1/"]
)
def test_docker_hub_aliases(name: str) -> None:
    assert normalize_registry(name) == DOCKER_HUB_REGISTRY


def test_registry_without_scheme_is_https_and_plain_http_needs_loopback() -> None:
    assert normalize_registry("registry.example.com:5000") == "https://registry.example.com:5000"
    assert normalize_registry("http://127.0.0.1:5000/v2/") == "http://127.0.0.1:5000"
    with pytest.raises(ConfigurationError, match="plain http"):
        normalize_registry("http://registry.example.com")


def test_refresh_is_due_in_the_last_tenth() -> None:
    s = Session("oidc", "u", "https://i", 0.0, 3600.0, 0.0)
    assert refresh_margin(s) == 360.0
    assert not refresh_due(s, now=3000.0)
    assert refresh_due(s, now=3300.0)
