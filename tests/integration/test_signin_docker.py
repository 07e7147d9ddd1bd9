"""Docker-account sign-in against the real distribution registry (Basic via htpasswd; Bearer via
a token server whose JWTs the registry itself validates), with the secret in a real keyring."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import keyring
import pytest

from app.paths import user_paths
from app.signin import manager
from app.signin.docker_registry import verify_docker_credentials
from app.signin.errors import ConfigurationError, CredentialsRefused, ServerUnavailable
from app.signin.state import current_session, is_signed_in, stored_session
from tests.signin_peers.fixtures import DOCKER_PASSWORD, DOCKER_USER, Registry
from tests.signin_peers.token_server import TokenServer


async def test_basic_registry_accepts_good_and_refuses_bad(basic_registry: Registry) -> None:
    identity = await verify_docker_credentials(DOCKER_USER, DOCKER_PASSWORD, basic_registry.url)
    assert (identity.username, identity.scheme) == (DOCKER_USER, "basic")
    with pytest.raises(CredentialsRefused, match="refused the username"):
        await verify_docker_credentials(DOCKER_USER, "wrong", basic_registry.url)
    with pytest.raises(CredentialsRefused):
        await verify_docker_credentials("mallory", DOCKER_PASSWORD, basic_registry.url)


async def test_bearer_registry_accepts_good_and_refuses_bad(
    token_registry: Registry, tokens: TokenServer
) -> None:
    identity = await verify_docker_credentials(DOCKER_USER, DOCKER_PASSWORD, token_registry.url)
    assert identity.scheme == "bearer"
    before = tokens.requests
    with pytest.raises(CredentialsRefused):
        await verify_docker_credentials(DOCKER_USER, "wrong", token_registry.url)
    assert tokens.requests == before + 1  # the token server, not the client, said no


async def test_login_stores_secret_in_keyring_only(
    hostnet_home: Path, real_keyring: object, basic_registry: Registry
) -> None:
    paths = user_paths()
    outcome = await manager.login_docker(
        paths, DOCKER_USER, DOCKER_PASSWORD, registry=basic_registry.url
    )
    assert outcome.remembered and outcome.notice == ""
    assert outcome.session.store == "keyring"
    assert is_signed_in(paths)
    stored = keyring.get_password("hostnet", "docker")
    assert stored is not None and DOCKER_PASSWORD in stored
    assert (
        "SecretService"
        in type(keyring.get_keyring()).__name__ + type(keyring.get_keyring()).__module__
    )
    for path in hostnet_home.rglob("*"):
        if path.is_file():
            assert DOCKER_PASSWORD not in path.read_text(errors="replace"), path

    result = await manager.logout(paths)
    assert result.signed_out is not None and result.signed_out.user == DOCKER_USER
    assert keyring.get_password("hostnet", "docker") is None
    assert not is_signed_in(paths)


async def test_bad_password_leaves_existing_session(
    hostnet_home: Path, real_keyring: object, basic_registry: Registry
) -> None:
    paths = user_paths()
    await manager.login_docker(paths, DOCKER_USER, DOCKER_PASSWORD, registry=basic_registry.url)
    with pytest.raises(CredentialsRefused):
        await manager.login_docker(paths, DOCKER_USER, "nope", registry=basic_registry.url)
    assert is_signed_in(paths)


async def test_revoked_account_ends_session_on_refresh(
    hostnet_home: Path, real_keyring: object, token_registry: Registry, tokens: TokenServer
) -> None:
    paths = user_paths()
    await manager.login_docker(paths, DOCKER_USER, DOCKER_PASSWORD, registry=token_registry.url)
    renewed = await manager.refresh_session(paths, force=True)
    assert renewed is not None and renewed.refreshed_at >= time.time() - 5
    del tokens.users[DOCKER_USER]  # the account's token is revoked at the server
    with pytest.raises(CredentialsRefused, match="signed out"):
        await manager.refresh_session(paths, force=True)
    assert not is_signed_in(paths)
    assert keyring.get_password("hostnet", "docker") is None


async def test_hanging_token_server_times_out_and_keeps_session(
    hostnet_home: Path, real_keyring: object, token_registry: Registry, tokens: TokenServer
) -> None:
    paths = user_paths()
    await manager.login_docker(paths, DOCKER_USER, DOCKER_PASSWORD, registry=token_registry.url)
    before = stored_session(paths)
    tokens.hang.set()
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match="did not answer within 1 s"):
        await manager.refresh_session(paths, force=True, timeout=1.0)
    assert time.monotonic() - started < 3
    assert current_session(paths) == before


async def test_server_down_gives_clear_message(hostnet_home: Path, real_keyring: object) -> None:
    from tests.signin_peers.registry import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailable, match="cannot connect"):
        await manager.login_docker(user_paths(), DOCKER_USER, DOCKER_PASSWORD, registry=url)
    assert not is_signed_in(user_paths())


async def test_plain_http_refused_off_loopback() -> None:
    with pytest.raises(ConfigurationError, match="plain http"):
        await verify_docker_credentials("a", "b", "http://registry.example.com")


async def test_cancel_stops_a_hanging_sign_in(
    hostnet_home: Path, real_keyring: object, token_registry: Registry, tokens: TokenServer
) -> None:
    import threading

    from app.signin.cancel import run_blocking
    from app.signin.errors import SignInCancelled

    tokens.hang.set()
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(SignInCancelled):
        await asyncio.to_thread(
            run_blocking,
            lambda: manager.login_docker(
                user_paths(), DOCKER_USER, DOCKER_PASSWORD, registry=token_registry.url
            ),
            cancel,
        )
    assert time.monotonic() - started < 2
