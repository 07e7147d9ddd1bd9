"""Look for secrets in every log and output file a test run left behind.

The secrets are the ones the run itself made or used: every per-VM secret file (raw bytes,
and their hex and base64 spellings), the test account's password and the test keyring's
password. A log is any file whose name ends in ``.log`` or ``.out`` or lies in a ``log``
folder.
"""

from __future__ import annotations

import base64
from pathlib import Path

from tests.signin_peers.fixtures import DOCKER_PASSWORD
from tests.signin_peers.keyring_daemon import PASSWORD as KEYRING_PASSWORD

MAX_LOG_BYTES = 64 << 20


def known_secrets(root: Path) -> dict[str, bytes]:
    found = {"test account password": DOCKER_PASSWORD.encode()}
    found["test keyring password"] = KEYRING_PASSWORD.encode()
    for path in root.rglob("secret"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        if len(raw) < 16:
            continue
        found[f"{path} (raw)"] = raw
        found[f"{path} (hex)"] = raw.hex().encode()
        found[f"{path} (base64)"] = base64.b64encode(raw).rstrip(b"=")
    return found


def is_log(path: Path) -> bool:
    return path.suffix in (".log", ".out") or "log" in path.parent.name.split("-")


def scan_for_secrets(root: Path, extra_logs: tuple[Path, ...] = ()) -> list[str]:
    """Every (secret, log file) pair where the secret appears in the log."""
    if not root.exists():
        return []
    secrets = known_secrets(root)
    logs = [p for p in root.rglob("*") if p.is_file() and is_log(p)]
    leaks = []
    for log in [*logs, *extra_logs]:
        try:
            data = log.read_bytes()[:MAX_LOG_BYTES]
        except OSError:
            continue
        for name, secret in secrets.items():
            if secret in data:
                leaks.append(f"{name} appears in {log}")
    return leaks
