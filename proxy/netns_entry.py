"""Entering a network namespace from one thread of this process.

setns(2) with CLONE_NEWNET moves only the calling thread, and a socket keeps the namespace
it was made in whichever thread uses it later. So a short-lived thread can enter a VM's
namespace, make what it needs there (a netlink socket, a /proc/sys write) and end, and the
rest of the process never leaves its own namespace: nothing to restore, nothing to forget
to restore. Entering needs CAP_SYS_ADMIN over the namespace (a root daemon and the
namespace VM it made).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000

Result = TypeVar("Result")


@functools.cache
def _libc() -> ctypes.CDLL:
    """libc, found once: find_library runs ldconfig(8), milliseconds a time."""
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def enter_netns(netns_path: str) -> None:
    """Move the calling thread into the network namespace at ``netns_path``; OSError if not."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc().setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {netns_path}: {os.strerror(error)}")
    finally:
        os.close(fd)


def call_in_netns(netns_path: str, call: Callable[[], Result], name: str = "netns-call") -> Result:
    """``call()`` run by a new thread inside the namespace at ``netns_path``: its result, or
    what it raised (OSError when the namespace cannot be entered)."""
    made: list[Result] = []
    failed: list[BaseException] = []

    def enter_and_call() -> None:
        try:
            enter_netns(netns_path)
            made.append(call())
        except BaseException as exc:  # handed to the caller below
            failed.append(exc)

    thread = threading.Thread(target=enter_and_call, name=name)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]
