"""Running libnftables JSON documents on the host or inside a namespace.

Documents are JSON for libnftables (what ``nft -j -f -`` reads); nothing is ever put
together as a shell string. They run in this process where that is safe (see
proxy/nat/libnftables.py), a namespace entered by a short-lived thread (setns), which leaves
the rest of the process, and its mounts, where they are; otherwise ``nft -j -f -`` runs as a
child, in a namespace under ``nsenter --net=`` (setns too, unlike ``ip netns exec``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from proxy.errors import HostnetError
from proxy.nat.libnftables import NftAnswer, libnftables, select_safe
from proxy.nat.ruleset import Document
from proxy.netns_entry import call_in_netns

NFT_TIMEOUT = 10.0
NFT_THREADS = 3
_threads = ThreadPoolExecutor(NFT_THREADS, thread_name_prefix="nft")
"""nftables' own threads: an nft(8) child takes tens of milliseconds on a loaded machine, and a
burst of them in the event loop's default executor would queue the daemon's other blocking
work (the port list's owners, the settings file) behind them."""
FALL_BACK = "set HostNetworkingDataPath to proxy to carry every port in user space"


class NftError(HostnetError):
    """libnftables refused a document or cannot run."""


def nft_available() -> bool:
    return libnftables() is not None and shutil.which("nft") is not None


def _where(netns: str | None) -> str:
    return "on the host" if netns is None else f"in namespace {netns}"


def _missing() -> NftError:
    return NftError(
        "the kernel path needs libnftables and nft(8), which are not installed",
        f"install the nftables package, or {FALL_BACK}",
    )


def _parse(output: str) -> dict[str, Any]:
    if not output.strip():
        return {"nftables": []}
    result = json.loads(output)
    return result if isinstance(result, dict) else {"nftables": []}


def run_nft(document: Document, *, netns: str | None = None) -> dict[str, Any]:
    """Apply (or list) ``document`` as one transaction; libnftables' JSON answer, if any."""
    if not document["nftables"]:
        return {"nftables": []}
    lib = libnftables()
    if lib is None or not nft_available():
        raise _missing()
    text = json.dumps(document)
    if netns is not None and not os.path.exists(netns):
        raise NftError(f"nftables could not run {_where(netns)}: it does not exist", FALL_BACK)
    try:
        if not select_safe():
            answer = _run_child(text, netns)
        elif netns is None:
            answer = lib.run(text)
        else:
            answer = call_in_netns(netns, lambda: lib.run(text), name="nft-setns")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NftError(f"nftables could not run {_where(netns)}: {exc}", FALL_BACK) from exc
    if answer.code != 0:
        message = answer.error.strip() or f"nftables returned {answer.code}"
        raise NftError(f"nftables refused the rules {_where(netns)}: {message}", FALL_BACK)
    return _parse(answer.output)


def _run_child(text: str, netns: str | None) -> NftAnswer:
    """``nft -j -f -`` as a child, the document on its stdin from an in-memory file (nft
    reopens /dev/stdin, which works for a file but not for every kind of pipe)."""
    argv = ["nft", "-j", "-f", "-"]
    if netns is not None:
        argv = ["nsenter", f"--net={netns}", *argv]
    stdin = os.memfd_create("nft-document", os.MFD_CLOEXEC)
    try:
        os.write(stdin, text.encode())
        os.lseek(stdin, 0, os.SEEK_SET)
        done = subprocess.run(
            argv, stdin=stdin, capture_output=True, timeout=NFT_TIMEOUT, check=False
        )
    finally:
        os.close(stdin)
    return NftAnswer(
        done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    )


async def run_nft_async(document: Document, *, netns: str | None = None) -> dict[str, Any]:
    """``run_nft`` in a worker thread, so the event loop goes on meanwhile."""
    if not document["nftables"]:
        return {"nftables": []}
    return await asyncio.get_running_loop().run_in_executor(
        _threads, functools.partial(run_nft, document, netns=netns)
    )


def write_sysctl(key: str, value: str, *, netns: str | None = None) -> None:
    """Write ``/proc/sys/KEY`` (slash form) on the host, or inside ``netns`` from a thread
    that entered it (/proc/sys/net shows the namespace of the thread that opens it)."""

    def write() -> None:
        Path("/proc/sys", key).write_text(value)

    try:
        if netns is None:
            write()
        else:
            call_in_netns(netns, write, name="sysctl-setns")
    except OSError as exc:
        raise NftError(f"cannot set {key} {_where(netns)}: {exc}", FALL_BACK) from exc


def interface_exists(ifname: str) -> bool:
    return os.path.exists(f"/sys/class/net/{ifname}")
