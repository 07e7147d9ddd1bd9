"""``docker-credential-hostnet``: docker's credentials from hostnet's sign-in.

It speaks the docker-credential-helpers protocol (https://github.com/docker/docker-credential-helpers):
the action is the one argument, the input comes on stdin and the answer goes to stdout.

- ``get`` (stdin: the server URL): for the registry hostnet is signed in to, the account and
  secret of that sign-in, read from where it keeps them (the OS keyring); otherwise what
  ``store`` kept. Unknown: "credentials not found in native keychain" and exit status 1.
- ``store`` (stdin: ``{"ServerURL", "Username", "Secret"}``): keeps other registries'
  credentials in the keyring beside the sign-in. The signed-in registry's come from the
  sign-in, so storing them changes nothing.
- ``erase`` (stdin: the server URL): forgets what ``store`` kept. The sign-in itself ends
  with ``hostnet logout``.
- ``list``: ``{server URL: username}``.

This is Docker Desktop's docker-credential-desktop.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from app.engine.registry_names import registry_key
from app.paths import Paths, user_paths
from app.signin.manager import SECRET_NAMES
from app.signin.secrets import Secrets, open_secrets
from app.signin.state import current_session
from proxy.errors import HostnetError

NOT_FOUND = "credentials not found in native keychain"
STORED = "docker-credentials"
"""The keyring entry holding what ``store`` kept: ``{server URL: {Username, Secret}}``."""


class HelperError(HostnetError):
    """Printed on stdout (as the protocol has it) with exit status 1."""


def _signed_in(paths: Paths) -> tuple[str, dict[str, Any]] | None:
    """The signed-in registry's URL and its secret entry, for a Docker sign-in."""
    session = current_session(paths)
    if session is None or session.provider != "docker":
        return None
    entry = open_secrets(paths, session.store).get(SECRET_NAMES["docker"])
    if not entry or not entry.get("username") or not entry.get("secret"):
        return None
    return session.server, entry


def _stored_secrets(paths: Paths) -> Secrets:
    secrets = open_secrets(paths)
    if secrets.store == "memory":
        raise HelperError("no OS keyring is available to keep credentials in")
    return secrets


def _stored(secrets: Secrets) -> dict[str, dict[str, str]]:
    entries = secrets.get(STORED) or {}
    return {k: v for k, v in entries.items() if isinstance(v, dict)}


def get(paths: Paths, server: str) -> dict[str, str]:
    signed_in = _signed_in(paths)
    if signed_in is not None and registry_key(signed_in[0]) == registry_key(server):
        entry = signed_in[1]
        return {"ServerURL": server, "Username": entry["username"], "Secret": entry["secret"]}
    secrets = open_secrets(paths)
    for url, entry in _stored(secrets).items():
        if registry_key(url) == registry_key(server):
            return {"ServerURL": server, "Username": entry["Username"], "Secret": entry["Secret"]}
    raise HelperError(NOT_FOUND)


def store(paths: Paths, credentials: dict[str, Any]) -> None:
    server, username, secret = (credentials.get(k) for k in ("ServerURL", "Username", "Secret"))
    if not all(isinstance(v, str) and v for v in (server, username, secret)):
        raise HelperError("store needs a JSON object with ServerURL, Username and Secret")
    assert isinstance(server, str)
    signed_in = _signed_in(paths)
    if signed_in is not None and registry_key(signed_in[0]) == registry_key(server):
        return
    secrets = _stored_secrets(paths)
    entries = _stored(secrets)
    entries[server] = {"Username": str(username), "Secret": str(secret)}
    secrets.set(STORED, entries)


def erase(paths: Paths, server: str) -> None:
    secrets = open_secrets(paths)
    entries = _stored(secrets)
    kept = {url: e for url, e in entries.items() if registry_key(url) != registry_key(server)}
    if kept != entries:
        secrets.set(STORED, kept)


def list_all(paths: Paths) -> dict[str, str]:
    listed = {url: e["Username"] for url, e in _stored(open_secrets(paths)).items()}
    signed_in = _signed_in(paths)
    if signed_in is not None:
        listed[signed_in[0]] = signed_in[1]["username"]
    return listed


def run(action: str, data: str, paths: Paths) -> str:
    """One protocol exchange: the text to print, or HelperError."""
    if action == "get":
        return json.dumps(get(paths, data.strip()))
    if action == "store":
        try:
            credentials = json.loads(data)
        except ValueError:
            raise HelperError("store needs JSON on stdin") from None
        if not isinstance(credentials, dict):
            raise HelperError("store needs a JSON object on stdin")
        store(paths, credentials)
        return ""
    if action == "erase":
        erase(paths, data.strip())
        return ""
    if action == "list":
        return json.dumps(list_all(paths))
    raise HelperError(f"unknown action {action!r}: use get, store, erase or list")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: docker-credential-hostnet get|store|erase|list", file=sys.stderr)
        return 1
    data = "" if args[0] == "list" else sys.stdin.read()
    try:
        output = run(args[0], data, user_paths())
    except HostnetError as exc:
        print(exc)
        return 1
    if output:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
