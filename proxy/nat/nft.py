"""Running libnftables JSON documents: ``nft -j -f -`` on the host or inside a namespace.

Documents go to nft on stdin as JSON; nothing is ever put together as a shell string. A
namespace is entered with ``nsenter --net=PATH`` (setns), which leaves the caller's mounts
alone, unlike ``ip netns exec``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from proxy.errors import HostnetError
from proxy.nat.ruleset import Document

NFT_TIMEOUT = 10.0


FALL_BACK = "set HostNetworkingDataPath to proxy to carry every port in user space"


class NftError(HostnetError):
    """nft refused a document or cannot run."""


def nft_available() -> bool:
    return shutil.which("nft") is not None


def _argv(netns: str | None, *command: str) -> list[str]:
    if netns is None:
        return list(command)
    return ["nsenter", f"--net={netns}", *command]


def _where(netns: str | None) -> str:
    return "on the host" if netns is None else f"in namespace {netns}"


def _missing() -> NftError:
    return NftError(
        "the kernel path needs nft(8), which is not installed",
        f"install the nftables package, or {FALL_BACK}",
    )


def _parse(output: bytes) -> dict[str, Any]:
    if not output.strip():
        return {"nftables": []}
    result = json.loads(output)
    return result if isinstance(result, dict) else {"nftables": []}


def _document_file(document: Document) -> int:
    """The document in an in-memory file for nft's stdin: nft reopens /dev/stdin, which
    works for a file but not for the socket an event loop may hand a child as a pipe."""
    fd = os.memfd_create("nft-document", os.MFD_CLOEXEC)
    os.write(fd, json.dumps(document).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def run_nft(document: Document, *, netns: str | None = None) -> dict[str, Any]:
    """Apply (or list) ``document`` as one transaction; nft's JSON answer, if any."""
    if not document["nftables"]:
        return {"nftables": []}
    if not nft_available():
        raise _missing()
    stdin = _document_file(document)
    try:
        done = subprocess.run(
            _argv(netns, "nft", "-j", "-f", "-"),
            stdin=stdin,
            capture_output=True,
            timeout=NFT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NftError(f"nft could not run {_where(netns)}: {exc}", FALL_BACK) from exc
    finally:
        os.close(stdin)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise NftError(f"nft refused the rules {_where(netns)}: {message}", FALL_BACK)
    return _parse(done.stdout)


async def run_nft_async(document: Document, *, netns: str | None = None) -> dict[str, Any]:
    """``run_nft`` without blocking the event loop."""
    if not document["nftables"]:
        return {"nftables": []}
    if not nft_available():
        raise _missing()
    stdin = _document_file(document)
    try:
        proc = await asyncio.create_subprocess_exec(
            *_argv(netns, "nft", "-j", "-f", "-"),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), NFT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise NftError(f"nft could not run {_where(netns)}: {exc}", FALL_BACK) from exc
    finally:
        os.close(stdin)
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip()
        raise NftError(f"nft refused the rules {_where(netns)}: {message}", FALL_BACK)
    return _parse(out)


def write_sysctl(key: str, value: str, *, netns: str | None = None) -> None:
    """Write ``/proc/sys/KEY`` (slash form) on the host, or inside ``netns`` with sysctl(8)."""
    if netns is None:
        try:
            Path("/proc/sys", key).write_text(value)
        except OSError as exc:
            raise NftError(f"cannot set {key} on the host: {exc}", FALL_BACK) from exc
        return
    try:
        done = subprocess.run(
            _argv(netns, "sysctl", "-q", "-w", f"{key}={value}"),
            capture_output=True,
            timeout=NFT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NftError(f"cannot set {key} {_where(netns)}: {exc}", FALL_BACK) from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise NftError(f"cannot set {key} {_where(netns)}: {message}", FALL_BACK)


def interface_exists(ifname: str) -> bool:
    return os.path.exists(f"/sys/class/net/{ifname}")
