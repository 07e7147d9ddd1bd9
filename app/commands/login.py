"""``hostnet login``, ``hostnet logout`` and ``hostnet whoami``.

Passwords never come from argv: a TTY prompt, or ``--password-stdin`` (like ``docker login``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
import webbrowser
from typing import Any

from app.paths import user_paths
from app.settings_writer import SettingsWriter
from app.signin import manager
from app.signin.config import load_config
from app.signin.errors import SignInError
from app.signin.oidc import DeviceCode
from app.signin.session import Session
from app.signin.state import current_session


def register(subparsers: Any) -> None:
    login = subparsers.add_parser("login", help="sign in (Docker account or your organisation)")
    login.add_argument("--provider", choices=("docker", "oidc"), help="default: the setting")
    login.add_argument("-u", "--username", help="Docker account name")
    login.add_argument(
        "--password-stdin", action="store_true", help="read the password or token from stdin"
    )
    login.add_argument("--registry", help="registry to check a Docker account against")
    login.add_argument("--issuer", help="OpenID Connect issuer URL")
    login.add_argument("--client-id", help="OpenID Connect client ID")
    login.add_argument("--device", action="store_true", help="approve on another device")
    login.add_argument(
        "--store-secrets-in-file",
        action="store_true",
        help="keep secrets in a private 0600 file instead of the OS keyring",
    )
    login.add_argument("--timeout", type=float, default=10.0, help="seconds per server request")
    login.set_defaults(func=run_login)

    logout = subparsers.add_parser("logout", help="sign out and turn host networking off")
    logout.set_defaults(func=run_logout)

    whoami = subparsers.add_parser("whoami", help="who is signed in")
    whoami.add_argument("--json", action="store_true", help="print JSON")
    whoami.set_defaults(func=run_whoami)


def _err(message: str) -> int:
    print(f"hostnet: {message}", file=sys.stderr)
    return 1


def _read_secret(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise SignInError(
            "No terminal to ask for the password. Pipe it in with --password-stdin "
            "(passwords are never accepted as command-line arguments)."
        )
    return getpass.getpass("Password or personal access token: ")


def _open_browser(url: str) -> None:
    print("Opening your browser to sign in. If it does not open, visit:", file=sys.stderr)
    print(f"  {url}", file=sys.stderr)
    webbrowser.open(url)


def _show_device_code(code: DeviceCode) -> None:
    where = code.verification_uri_complete or code.verification_uri
    print(f"To sign in, visit {where}", file=sys.stderr)
    print(f"and enter the code: {code.user_code}", file=sys.stderr)
    print(f"(it expires in {code.expires_in:.0f} s; waiting...)", file=sys.stderr)


def run_login(args: argparse.Namespace) -> int:
    paths = user_paths()
    try:
        config = load_config(
            paths,
            provider=args.provider,
            registry=args.registry,
            issuer=args.issuer,
            client_id=args.client_id,
        )
        if config.provider == "docker":
            username = args.username
            if not username:
                if args.password_stdin or not sys.stdin.isatty():
                    return _err("Give the Docker account name with --username NAME.")
                username = input("Username: ").strip()
            secret = _read_secret(args)
            outcome = asyncio.run(
                manager.login_docker(
                    paths,
                    username,
                    secret,
                    registry=config.registry,
                    store_in_file=args.store_secrets_in_file,
                    timeout=args.timeout,
                )
            )
        elif args.device:
            outcome = asyncio.run(
                manager.login_oidc_device(
                    paths,
                    issuer=config.issuer,
                    client_id=config.client_id,
                    on_code=_show_device_code,
                    store_in_file=args.store_secrets_in_file,
                    timeout=args.timeout,
                )
            )
        else:
            outcome = asyncio.run(
                manager.login_oidc(
                    paths,
                    issuer=config.issuer,
                    client_id=config.client_id,
                    open_browser=_open_browser,
                    store_in_file=args.store_secrets_in_file,
                    timeout=args.timeout,
                )
            )
    except EOFError:
        return _err("No input: sign-in cancelled.")
    session = outcome.session
    note = SettingsWriter.for_user(paths).sign_in_changed(signed_out=False)
    print(f"Signed in as {session.user} ({_provider_label(session)}).")
    for line in (outcome.notice, note):
        if line:
            print(line, file=sys.stderr)
    return 0


def run_logout(args: argparse.Namespace) -> int:
    paths = user_paths()
    outcome = asyncio.run(manager.logout(paths))
    note = SettingsWriter.for_user(paths).sign_in_changed(signed_out=True)
    if outcome.signed_out is None:
        print("Nobody was signed in.")
    else:
        print(f"Signed out {outcome.signed_out.user} ({_provider_label(outcome.signed_out)}).")
    for line in (*outcome.notes, note):
        if line:
            print(line, file=sys.stderr)
    return 0


def _provider_label(session: Session) -> str:
    return (
        f"Docker account at {session.server}"
        if session.provider == "docker"
        else (f"{session.server}")
    )


def whoami_json(session: Session | None) -> dict[str, Any]:
    if session is None:
        return {"signed_in": False}
    return {
        "signed_in": True,
        "provider": session.provider,
        "user": session.user,
        "server": session.server,
        "display_name": session.display_name,
        "email": session.email,
        "signed_in_at": session.signed_in_at,
        "expires_at": session.expires_at,
        "expires_in": max(int(session.seconds_left()), 0),
        "remembered": session.remembered,
        "secret_store": session.store,
    }


def run_whoami(args: argparse.Namespace) -> int:
    session = current_session(user_paths())
    if args.json:
        print(json.dumps(whoami_json(session), indent=2))
        return 0 if session else 1
    if session is None:
        print("Not signed in. Sign in with `hostnet login`.")
        return 1
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(session.expires_at))
    print(f"{session.user} ({_provider_label(session)}), signed in until {until}")
    if not session.remembered:
        print("This sign-in is not remembered (no OS keyring).", file=sys.stderr)
    return 0
