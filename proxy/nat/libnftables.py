"""libnftables, the library behind nft(8), called in this process through ctypes.

The same JSON documents ``nft -j -f -`` reads, without a child process: a port added to the
kernel path's sets costs a fraction of a millisecond here against 6 ms for a quiet nft(8)
child and 25-45 ms for one started from a busy daemon. Each call makes a context of its own
and frees it, so a context never outlives the namespace its netlink socket was made in (a
kept socket would keep a deleted VM namespace, and its link, alive). One lock serialises the
calls: libnftables makes no promise about contexts used from several threads at once.

libnftables (1.0.6, Debian 12's) waits on its netlink socket with select(2), and glibc aborts
the whole process ("bit out of range 0 - FD_SETSIZE on fd_set") when that socket's number is
1024 or more: a daemon mirroring a thousand ports has that many descriptors. So the library
is called in this process only while its descriptor table is small (``select_safe``), and
otherwise nft(8) runs as a child, which starts with three descriptors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

LIBRARY: Final = "libnftables.so.1"
NFT_CTX_DEFAULT: Final = 0
NFT_CTX_OUTPUT_JSON: Final = 1 << 4
"""``enum nft_output_flags`` in nftables/libnftables.h: what ``nft -j`` sets."""
SELECT_SAFE_TABLE: Final = 512
"""The largest descriptor table (``FDSize``) for which a new socket is surely below select(2)'s
1024, with room for the sockets other threads open meanwhile."""


def select_safe(status: Path = Path("/proc/self/status")) -> bool:
    """Whether every descriptor of this process is below SELECT_SAFE_TABLE: the kernel sizes
    the table to hold the highest one, and never shrinks it, so once the process has had
    that many this stays False."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("FDSize:"):
                return int(line.split()[1]) <= SELECT_SAFE_TABLE
    except (OSError, ValueError, IndexError):
        pass
    return False


@dataclass(frozen=True)
class NftAnswer:
    """What one call gave: libnftables' return code and its output and error texts."""

    code: int
    output: str
    error: str


class Libnftables:
    """The loaded library; ``run`` takes one JSON document as text."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._lock = threading.Lock()
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.restype = None
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
        lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.restype = None
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).restype = ctypes.c_int
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

    def run(self, document: str) -> NftAnswer:
        """Run ``document`` (JSON) in the calling thread's network namespace."""
        lib = self._lib
        with self._lock:
            ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
            if not ctx:
                raise MemoryError("libnftables could not make a context")
            try:
                lib.nft_ctx_output_set_flags(
                    ctx, lib.nft_ctx_output_get_flags(ctx) | NFT_CTX_OUTPUT_JSON
                )
                if lib.nft_ctx_buffer_output(ctx) or lib.nft_ctx_buffer_error(ctx):
                    raise MemoryError("libnftables could not buffer its output")
                code = lib.nft_run_cmd_from_buffer(ctx, document.encode())
                output = lib.nft_ctx_get_output_buffer(ctx) or b""
                error = lib.nft_ctx_get_error_buffer(ctx) or b""
            finally:
                lib.nft_ctx_free(ctx)
        return NftAnswer(code, output.decode(errors="replace"), error.decode(errors="replace"))


_loaded: list[Libnftables | None] = []
_load_lock = threading.Lock()


def libnftables() -> Libnftables | None:
    """The library, loaded once; None where it is not installed (no nftables package)."""
    with _load_lock:
        if not _loaded:
            path = ctypes.util.find_library("nftables") or LIBRARY
            try:
                _loaded.append(Libnftables(ctypes.CDLL(path, use_errno=True)))
            except (OSError, AttributeError):
                _loaded.append(None)
        return _loaded[0]
