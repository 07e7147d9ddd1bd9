"""Sign in, keep the session fresh, sign out: the functions the CLI, the GUI and the daemon call.

Each sign-in verifies the account with its provider, stores the secret (keyring, opted-in file,
or this run's memory), then writes the non-secret session record. Signing out removes both,
revokes the OIDC refresh token (best effort, bounded). What signing in or out does to the
settings is the sign-in rule's (``app.policy.sign_in``), applied by the settings writer: the
caller tells it with ``app.settings_writer.SettingsWriter.sign_in_changed``, and a running
daemon also sees the session record change.
All network work is bounded by ``timeout``; async functions are cancelled by cancelling their
task, and ``app.signin.cancel.run_blocking`` runs them from a worker thread with a cancel event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from keyring.backend import KeyringBackend

from app.paths import Paths
from app.signin import http, oidc
from app.signin.docker_registry import verify_docker_credentials
from app.signin.errors import CredentialsRefused, NoKeyring, SignInError
from app.signin.secrets import Secrets, find_keyring, no_keyring_message, open_secrets
from app.signin.session import ProviderName, Session
from app.signin.state import clear_session, stored_session, write_session

DOCKER_SESSION_LIFETIME = 24 * 3600.0
SECRET_NAMES: dict[ProviderName, str] = {"docker": "docker", "oidc": "oidc"}


@dataclass(frozen=True)
class LoginOutcome:
    session: Session
    notice: str = ""  # e.g. "will not be remembered" when there is no real keyring

    @property
    def remembered(self) -> bool:
        return self.session.remembered


@dataclass(frozen=True)
class LogoutOutcome:
    signed_out: Session | None  # who was signed in (None: nobody)
    notes: tuple[str, ...] = ()


def _secrets_for_login(paths: Paths, store_in_file: bool) -> Secrets:
    return open_secrets(paths, "file" if store_in_file else None)


def _forget_other_secrets(paths: Paths, secrets: Secrets, keep: ProviderName) -> None:
    for provider, name in SECRET_NAMES.items():
        if provider != keep:
            with contextlib.suppress(SignInError):
                secrets.delete(name)


def _finish_login(
    paths: Paths, secrets: Secrets, session: Session, secret: dict[str, object]
) -> LoginOutcome:
    previous = stored_session(paths)
    if previous is not None and previous.store != secrets.store:
        with contextlib.suppress(SignInError):
            Secrets(previous.store, paths, secrets.backend).delete(SECRET_NAMES[previous.provider])
    secrets.set(SECRET_NAMES[session.provider], secret)
    _forget_other_secrets(paths, secrets, session.provider)
    write_session(paths, session)
    return LoginOutcome(session, no_keyring_message() if secrets.store == "memory" else "")


async def login_docker(
    paths: Paths,
    username: str,
    secret: str,
    *,
    registry: str = "",
    store_in_file: bool = False,
    timeout: float = http.DEFAULT_TIMEOUT,
) -> LoginOutcome:
    """Sign in with a Docker account (password or personal access token)."""
    secrets = await asyncio.to_thread(_secrets_for_login, paths, store_in_file)
    identity = await verify_docker_credentials(username, secret, registry, timeout)
    now = time.time()
    session = Session(
        provider="docker",
        user=identity.username,
        server=identity.registry,
        signed_in_at=now,
        expires_at=now + DOCKER_SESSION_LIFETIME,
        refreshed_at=now,
        store=secrets.store,
    )
    entry: dict[str, object] = {
        "username": identity.username,
        "secret": secret,
        "registry": identity.registry,
    }
    return await asyncio.to_thread(_finish_login, paths, secrets, session, entry)


def _oidc_session(result: oidc.OidcResult, store: str, signed_in_at: float | None) -> Session:
    now = time.time()
    claims = result.claims
    return Session(
        provider="oidc",
        user=result.user,
        server=result.issuer,
        signed_in_at=signed_in_at or now,
        expires_at=result.expires_at,
        refreshed_at=now,
        store=store,  # type: ignore[arg-type]
        display_name=str(claims.get("name", "")),
        email=str(claims.get("email", "")),
        client_id=result.client_id,
        extra={"sub": str(claims.get("sub", "")), "can_refresh": result.refresh_token is not None},
    )


def _oidc_secret(result: oidc.OidcResult) -> dict[str, object]:
    return {
        "access_token": result.access_token,
        "refresh_token": result.refresh_token,
        "id_token": result.id_token,
        "claims": result.claims,
        "expires_at": result.expires_at,
    }


async def login_oidc(
    paths: Paths,
    *,
    issuer: str,
    client_id: str,
    open_browser: Callable[[str], object],
    store_in_file: bool = False,
    timeout: float = http.DEFAULT_TIMEOUT,
    wait: float = oidc.BROWSER_WAIT,
) -> LoginOutcome:
    """Sign in through the system browser (authorization code + PKCE, loopback redirect)."""
    secrets = await asyncio.to_thread(_secrets_for_login, paths, store_in_file)
    result = await oidc.browser_sign_in(issuer, client_id, open_browser, timeout=timeout, wait=wait)
    session = _oidc_session(result, secrets.store, None)
    return await asyncio.to_thread(_finish_login, paths, secrets, session, _oidc_secret(result))


async def login_oidc_device(
    paths: Paths,
    *,
    issuer: str,
    client_id: str,
    on_code: Callable[[oidc.DeviceCode], object],
    store_in_file: bool = False,
    timeout: float = http.DEFAULT_TIMEOUT,
) -> LoginOutcome:
    """Sign in with the device authorization grant; ``on_code`` shows the code to the person."""
    secrets = await asyncio.to_thread(_secrets_for_login, paths, store_in_file)
    result = await oidc.device_sign_in(issuer, client_id, on_code, timeout=timeout)
    session = _oidc_session(result, secrets.store, None)
    return await asyncio.to_thread(_finish_login, paths, secrets, session, _oidc_secret(result))


def refresh_margin(session: Session) -> float:
    """How long before expiry a refresh is due: a tenth of the lifetime, 30 s to 1 h."""
    lifetime = max(session.expires_at - session.refreshed_at, 0.0)
    return min(max(lifetime / 10, 30.0), 3600.0)


def refresh_due(session: Session, now: float | None = None) -> bool:
    return session.seconds_left(now) <= refresh_margin(session)


async def refresh_session(
    paths: Paths, *, force: bool = False, timeout: float = http.DEFAULT_TIMEOUT
) -> Session | None:
    """Renew the session if it is due (or ``force``); the session afterwards, None if ended.

    The provider refusing (revoked token, changed password) ends the session (signed out
    here; the caller applies the sign-in rule) and CredentialsRefused is raised. A server
    that is down or slow raises ServerUnavailable and leaves the session as it was. A
    session whose secrets were kept for one run only cannot be renewed by another process:
    it is returned as is, to lapse.
    """
    session = stored_session(paths)
    if session is None:
        return None
    if not force and not refresh_due(session):
        return session
    secrets = await asyncio.to_thread(Secrets, session.store, paths, _backend_for(session))
    entry = await asyncio.to_thread(secrets.get, SECRET_NAMES[session.provider])
    if entry is None:
        return session if session.is_valid() else None
    try:
        if session.provider == "docker":
            username, secret = str(entry.get("username", "")), str(entry.get("secret", ""))
            identity = await verify_docker_credentials(username, secret, session.server, timeout)
            now = time.time()
            renewed = replace(
                session,
                user=identity.username,
                refreshed_at=now,
                expires_at=now + DOCKER_SESSION_LIFETIME,
            )
        else:
            token = entry.get("refresh_token")
            if not isinstance(token, str):
                return session if session.is_valid() else None
            claims = entry.get("claims")
            result = await oidc.refresh(
                session.server,
                session.client_id,
                token,
                claims if isinstance(claims, dict) else {},
                timeout=timeout,
            )
            renewed = _oidc_session(result, session.store, session.signed_in_at)
            await asyncio.to_thread(secrets.set, SECRET_NAMES["oidc"], _oidc_secret(result))
    except CredentialsRefused as exc:
        await asyncio.to_thread(logout_local, paths)
        raise CredentialsRefused(
            f"{exc} You have been signed out; sign in again with `hostnet login`."
        ) from None
    await asyncio.to_thread(write_session, paths, renewed)
    return renewed


def _backend_for(session: Session) -> KeyringBackend | None:
    if session.store != "keyring":
        return None
    backend = find_keyring()
    if backend is None:
        raise NoKeyring(
            "The keyring that holds your sign-in is not available now. Start or unlock it "
            "(log in to your desktop session) and try again."
        )
    return backend


def logout_local(paths: Paths) -> LogoutOutcome:
    """Forget the session and its secrets on this machine."""
    session = stored_session(paths)
    notes: list[str] = []
    stores = {session.store} if session is not None else set()
    stores.add("memory")
    for store in stores:
        try:
            backend = _backend_for(session) if session and store == "keyring" else None
            secrets = Secrets(store, paths, backend)
            for name in SECRET_NAMES.values():
                secrets.delete(name)
        except SignInError as exc:
            notes.append(f"Could not remove the saved secrets: {exc}")
    clear_session(paths)
    return LogoutOutcome(session, tuple(notes))


async def logout(paths: Paths, *, timeout: float = 5.0) -> LogoutOutcome:
    """Sign out: revoke the OIDC refresh token (best effort, bounded), then ``logout_local``."""
    session = stored_session(paths)
    notes: list[str] = []
    if session is not None and session.provider == "oidc" and session.client_id:
        try:
            backend = await asyncio.to_thread(_backend_for, session)
            secrets = Secrets(session.store, paths, backend)
            entry = await asyncio.to_thread(secrets.get, SECRET_NAMES["oidc"])
            token = entry.get("refresh_token") if entry else None
            if isinstance(token, str):
                await oidc.revoke(session.server, session.client_id, token, timeout=timeout)
        except SignInError as exc:
            notes.append(f"The provider could not be told to revoke the session: {exc}")
    outcome = await asyncio.to_thread(logout_local, paths)
    return LogoutOutcome(outcome.signed_out, (*notes, *outcome.notes))


async def keep_session_fresh(
    paths: Paths,
    stop: asyncio.Event,
    *,
    on_change: Callable[[Session | None, str], object] | None = None,
    timeout: float = http.DEFAULT_TIMEOUT,
    retry: float = 60.0,
) -> None:
    """For the daemon or GUI: refresh before expiry until ``stop`` is set.

    ``on_change(session_or_None, message)`` is called after each refresh, failure or sign-out.
    """
    while not stop.is_set():
        session = stored_session(paths)
        if session is None:
            delay = retry
        else:
            delay = max(session.seconds_left() - refresh_margin(session), 0.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(delay, retry) if session is None else delay)
        if stop.is_set() or session is None:
            continue
        try:
            renewed = await refresh_session(paths, timeout=timeout)
            message = ""
        except CredentialsRefused as exc:
            renewed, message = None, str(exc)
        except SignInError as exc:
            renewed, message = stored_session(paths), str(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry)
        if renewed is not None and not renewed.is_valid():
            await asyncio.to_thread(logout_local, paths)
            renewed, message = None, "The session expired; sign in again with `hostnet login`."
        if on_change is not None:
            on_change(renewed, message)
