"""OpenID Connect sign-in against the certified ``oidc-provider`` on loopback, its login,
consent and device pages driven over HTTP like a person at a browser."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import keyring
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from app.paths import user_paths
from app.signin import manager, oidc
from app.signin.errors import (
    AccessDenied,
    ConfigurationError,
    CredentialsRefused,
    FlowExpired,
    TokenInvalid,
)
from app.signin.id_token import validate_id_token
from app.signin.oidc_discovery import discover, fetch_jwks
from app.signin.state import current_session, is_signed_in
from tests.signin_peers.browser import Person

CLIENT = "hostnet-desktop"


def browser_for(person: Person, *, consent: bool = True) -> object:
    """An ``open_browser`` that hands the URL to a person in another thread."""

    def open_browser(url: str) -> None:
        loopback = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        threading.Thread(
            target=person.authorize, args=(url, loopback), kwargs={"consent": consent}, daemon=True
        ).start()

    return open_browser


async def test_browser_sign_in_with_pkce_and_refresh(
    hostnet_home: Path, real_keyring: object, oidc_issuer: str
) -> None:
    paths = user_paths()
    seen: list[str] = []
    person = Person("carol")

    def open_browser(url: str) -> None:
        seen.append(url)
        browser_for(person)(url)  # type: ignore[operator]

    outcome = await manager.login_oidc(
        paths, issuer=oidc_issuer, client_id=CLIENT, open_browser=open_browser, wait=20
    )
    query = parse_qs(urlsplit(seen[0]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:")
    assert outcome.session.user == "carol" and outcome.session.provider == "oidc"
    stored = keyring.get_password("hostnet", "oidc")
    assert stored is not None and "refresh_token" in stored
    first = current_session(paths)
    assert first is not None

    renewed = await manager.refresh_session(paths, force=True)
    assert renewed is not None and renewed.user == "carol"
    assert keyring.get_password("hostnet", "oidc") != stored  # rotated tokens saved

    outcome2 = await manager.logout(paths)
    assert outcome2.signed_out is not None and not outcome2.notes
    assert keyring.get_password("hostnet", "oidc") is None
    assert not is_signed_in(paths)


async def test_revoked_refresh_token_signs_out(
    hostnet_home: Path, real_keyring: object, oidc_issuer: str
) -> None:
    paths = user_paths()
    await manager.login_oidc(
        paths, issuer=oidc_issuer, client_id=CLIENT, open_browser=browser_for(Person()), wait=20
    )  # type: ignore[arg-type]
    import json

    entry = json.loads(keyring.get_password("hostnet", "oidc") or "{}")
    assert await oidc.revoke(oidc_issuer, CLIENT, entry["refresh_token"])
    with pytest.raises(CredentialsRefused, match="signed out"):
        await manager.refresh_session(paths, force=True)
    assert not is_signed_in(paths)


async def test_consent_denied(hostnet_home: Path, oidc_issuer: str) -> None:
    with pytest.raises(AccessDenied):
        await oidc.browser_sign_in(
            oidc_issuer,
            CLIENT,
            browser_for(Person(), consent=False),
            wait=20,  # type: ignore[arg-type]
        )


async def test_pkce_verifier_mismatch_refused(oidc_issuer: str) -> None:
    """Drive the browser step ourselves, then redeem the code with the wrong verifier."""
    from authlib.common.security import generate_token

    from app.signin.loopback import LoopbackRedirect
    from app.signin.oidc import _client

    metadata = await discover(oidc_issuer)
    state, verifier = generate_token(20), generate_token(64)
    async with LoopbackRedirect(state) as redirect:
        async with _client(
            CLIENT, 10, scope="openid", redirect_uri=redirect.uri, code_challenge_method="S256"
        ) as client:
            url, _ = client.create_authorization_url(
                metadata.authorization_endpoint, state=state, code_verifier=verifier
            )
        browser_for(Person())(url)  # type: ignore[operator]
        response = await redirect.wait()
    with pytest.raises(CredentialsRefused, match="invalid_grant"):
        await oidc.exchange_code(
            metadata,
            CLIENT,
            code=response["code"],
            redirect_uri=redirect.uri,
            code_verifier=generate_token(64),
            nonce=None,
        )


async def test_id_token_checks(hostnet_home: Path, oidc_issuer: str) -> None:
    result = await oidc.browser_sign_in(
        oidc_issuer,
        CLIENT,
        browser_for(Person("dave")),
        wait=20,  # type: ignore[arg-type]
    )
    metadata = await discover(oidc_issuer)
    jwks = await fetch_jwks(metadata, 5)
    good = dict(issuer=metadata.issuer, client_id=CLIENT, nonce=None)
    assert validate_id_token(result.id_token, jwks, **good)["sub"] == "dave"  # type: ignore[arg-type]
    with pytest.raises(TokenInvalid, match="issued by"):
        validate_id_token(
            result.id_token, jwks, issuer="http://127.0.0.1:1", client_id=CLIENT, nonce=None
        )
    with pytest.raises(TokenInvalid, match="is for"):
        validate_id_token(
            result.id_token, jwks, issuer=metadata.issuer, client_id="other", nonce=None
        )
    with pytest.raises(TokenInvalid, match="expired"):
        validate_id_token(
            result.id_token,
            jwks,
            **good,  # type: ignore[arg-type]
            now=result.claims["exp"] + 120,
        )
    with pytest.raises(TokenInvalid, match="nonce"):
        validate_id_token(
            result.id_token, jwks, issuer=metadata.issuer, client_id=CLIENT, nonce="not-the-nonce"
        )
    # the same claims signed by a key that is not the provider's
    forged = jwt.encode(
        {"alg": "RS256", "kid": jwks["keys"][0].get("kid", "x")},
        result.claims,
        RSAKey.generate_key(2048),
    )
    with pytest.raises(TokenInvalid, match="signature"):
        validate_id_token(forged, jwks, **good)  # type: ignore[arg-type]
    header, payload, signature = result.id_token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(TokenInvalid, match="signature"):
        validate_id_token(tampered, jwks, **good)  # type: ignore[arg-type]


async def test_short_lived_tokens_expire_and_refresh(
    hostnet_home: Path, real_keyring: object, oidc_issuer: str
) -> None:
    """hostnet-short's tokens live 2 s: the session lapses unless refreshed."""
    paths = user_paths()
    outcome = await manager.login_oidc(
        paths,
        issuer=oidc_issuer,
        client_id="hostnet-short",
        open_browser=browser_for(Person()),
        wait=20,  # type: ignore[arg-type]
    )
    assert outcome.session.seconds_left() <= 3
    time.sleep(2.5)
    assert not is_signed_in(paths)  # expired
    renewed = await manager.refresh_session(paths)
    assert renewed is not None and renewed.is_valid() and is_signed_in(paths)


async def test_wrong_issuer_in_discovery_refused(oidc_issuer: str) -> None:
    assert (await discover(oidc_issuer + "/")).issuer == oidc_issuer  # a trailing slash is fine
    with pytest.raises(ConfigurationError, match="names the issuer"):
        await discover(oidc_issuer.replace("127.0.0.1", "localhost"))


async def test_device_flow_approved(
    hostnet_home: Path, real_keyring: object, oidc_issuer: str
) -> None:
    codes: list[oidc.DeviceCode] = []

    def on_code(code: oidc.DeviceCode) -> None:
        codes.append(code)
        threading.Timer(
            1.2, Person("erin").approve_device, args=(code.verification_uri, code.user_code)
        ).start()  # after at least one authorization_pending poll

    outcome = await manager.login_oidc_device(
        user_paths(), issuer=oidc_issuer, client_id=CLIENT, on_code=on_code
    )
    assert codes and codes[0].user_code and outcome.session.user == "erin"


async def test_device_flow_denied(oidc_issuer: str) -> None:
    def on_code(code: oidc.DeviceCode) -> None:
        threading.Thread(
            target=Person().approve_device,
            args=(code.verification_uri, code.user_code),
            kwargs={"approve": False},
            daemon=True,
        ).start()

    with pytest.raises(AccessDenied):
        await oidc.device_sign_in(oidc_issuer, CLIENT, on_code)


async def test_device_flow_expired(oidc_issuer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody approves: the provider's 30 s device code would make this slow, so the client's
    own deadline is shortened by shrinking the advertised lifetime the client reads."""
    real = oidc.DeviceCode

    def short(**kwargs: object) -> oidc.DeviceCode:
        kwargs["expires_in"] = 1.5
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(oidc, "DeviceCode", short)
    started = time.monotonic()
    with pytest.raises(FlowExpired):
        await oidc.device_sign_in(oidc_issuer, CLIENT, lambda code: None)
    assert time.monotonic() - started < 5
