"""What of the host the QEMU guest sees: one list, each entry its own 9p export.

The guest's root is its own tmpfs. Into it go, at their host paths:

- the system runtime (``/usr``; ``/bin``, ``/lib``... as the same symlinks where the host has
  merged /usr): the shell, coreutils, libc, and later the container engine's binaries;
- whatever ``extra`` names: what runs the guest command (``agent_runtime()``: the Python
  and hostnet's code; a frozen build's zipapp and the host's python3), its working folder,
  an engine helper's files;
- the folders the user shares (the ``FilesharingDirectories`` setting), read-write.

Each is a separate 9p export of that folder alone, read-only unless shared by the user: the
guest cannot reach a host path outside them, such as ``/root``, other users' homes or
``/etc``. The guest's ``/etc`` is a few generated files (``guest_etc``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vm.backends.errors import VMError

SETTING_FIX = "change FilesharingDirectories with `hostnet settings set FilesharingDirectories`"

SYSTEM_TREES = ("/usr",)
"""Host folders every guest command needs: programs, libraries, Python's stdlib. A Docker
engine helper adds its own (say /etc/docker) through ``extra``; dockerd, containerd and runc
themselves live in /usr."""

ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Top-level folders that merged-/usr hosts make symlinks into /usr: the same links in the
guest; on a host where one is a real folder, it is shared like /usr."""

GUEST_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GUEST_GROUP = "root:x:0:\nnogroup:x:65534:\n"
GUEST_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
MAX_SHARES = 20
"""9p exports per guest: each is a PCI device, and the machine's first bus has 32 slots."""
GUEST_RESOLV_CONF = "# the hostnet VM has no network of its own: no name servers\n"
COPIED_ETC = ("ld.so.cache", "nsswitch.conf")
"""Host files copied (not shared) into the guest's /etc: what the dynamic loader and libc
read. Nothing secret: both are world-readable."""


class ShareError(VMError):
    """A folder cannot be shared with the guest; the problem names it, the fix what to do."""


@dataclass(frozen=True)
class Share:
    """One host folder exported to the guest by 9p, at the same path."""

    path: Path
    writable: bool = False


def source_root() -> Path:
    """The folder holding the ``vm`` package (the repo, or site-packages)."""
    return Path(__file__).resolve().parents[2]


def agent_runtime() -> tuple[Path, ...]:
    """Host folders the agent needs besides the system: hostnet's code and its Python."""
    return (source_root(), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve())


def _is_under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_shared_folder(raw: str) -> Path:
    """A user's shared folder as a resolved path; ShareError saying why it cannot be."""
    path = Path(raw)
    if not path.is_absolute():
        raise ShareError(f"shared folder {raw!r} is not an absolute path", "give its full path")
    resolved = path.resolve()
    if not resolved.is_dir():
        raise ShareError(f"shared folder {raw} is not a folder on this machine", "create it first")
    if resolved == Path("/"):
        raise ShareError("the whole root (/) cannot be shared", "share the folders you need")
    if any(c.isspace() or c == ":" for c in str(resolved)):
        raise ShareError(
            f"shared folder {resolved}: paths with whitespace or ':' are not shared", SETTING_FIX
        )
    return resolved


def root_links() -> list[tuple[str, str]]:
    """(name, target) of the top-level symlinks the guest recreates, as on this host."""
    links = []
    for name in ROOT_LINKS:
        if os.path.islink(name):
            links.append((name, os.readlink(name)))
    return links


def guest_shares(extra: Iterable[Path] = (), shared_folders: Sequence[str] = ()) -> list[Share]:
    """Every 9p export of one guest, outermost first.

    ``extra`` are read-only additions, what runs the guest command among them (say
    ``agent_runtime()``; each resolved, one inside another export is covered by it);
    ``shared_folders`` are the user's, read-write. Raises ShareError for a bad folder.
    """
    wanted: dict[Path, bool] = {}
    system = [Path(p) for p in SYSTEM_TREES]
    system += [Path(p) for p in ROOT_LINKS if os.path.isdir(p) and not os.path.islink(p)]
    for path in [*system, *(Path(p).resolve() for p in extra)]:
        wanted.setdefault(path, False)
    for raw in shared_folders:
        wanted[check_shared_folder(raw)] = True
    shares: list[Share] = []
    for path in sorted(wanted, key=lambda p: (len(p.parts), str(p))):
        writable = wanted[path]
        # Covered by an outer export of the same kind: nothing more to mount.
        if any(_is_under(path, s.path) and s.writable == writable for s in shares):
            continue
        if path == Path("/"):
            raise ShareError("the whole root (/) cannot be shared", "share the folders you need")
        shares.append(Share(path, writable))
    if len(shares) > MAX_SHARES:
        raise ShareError(
            f"{len(shares)} folders to share with the guest, more than the {MAX_SHARES} it takes",
            "share a common parent folder instead of several of its subfolders",
        )
    return shares


def write_guest_etc(folder: Path) -> None:
    """The guest's /etc: a few generated files and the loader's cache, nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "passwd").write_text(GUEST_PASSWD)
    (folder / "group").write_text(GUEST_GROUP)
    (folder / "hosts").write_text(GUEST_HOSTS)
    (folder / "hostname").write_text("hostnet-vm\n")
    (folder / "resolv.conf").write_text(GUEST_RESOLV_CONF)
    for name in COPIED_ETC:
        source = Path("/etc") / name
        if source.is_file():
            (folder / name).write_bytes(source.read_bytes())
    _copy_alternatives(Path("/etc/alternatives"), folder / "alternatives")


def _copy_alternatives(source: Path, target: Path) -> None:
    """The host's /etc/alternatives links (symlinks only): /usr/sbin/iptables and others in
    the shared /usr point through them, and dockerd runs iptables."""
    target.mkdir(exist_ok=True)
    try:
        entries = list(source.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.is_symlink():
            link = target / entry.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.readlink(entry))
