"""Builds the micro-VM's boot image: a kernel and a small initramfs, cached per kernel.

The kernel comes from Debian's ``linux-image-amd64`` (its versioned dependency is fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x`` into the cache), from the running host's
``/boot`` when there is no apt, or from a kernel the user names. Debian builds virtio, 9p and
virtio_console as modules, so the initramfs carries them: busybox (static) as the shell of the
``/init`` script from :mod:`vm.backends.qemu_guest_init`, plus the ``.ko`` files the guest needs
with their dependencies resolved through ``modules.dep``. Built once per (kernel, init script,
module set, busybox) and kept under ``CACHE/images/<kernel version>-<key>/``.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import platform
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vm.backends.errors import VMError
from vm.backends.qemu_guest_init import INIT_SCRIPT

# What the guest needs, in the order /init loads them (dependencies are put first).
REQUIRED_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_console", "9pnet_virtio", "9p")
# Nice to have: /var overlay, ACPI power button (clean stop), entropy, vsock transport.
OPTIONAL_MODULES: tuple[str, ...] = (
    # The crc32c algorithm, which libcrc32c (nf_tables, nf_conntrack...) and ext4 ask the
    # crypto API for: it is no declared dependency, and the guest has no modprobe to load it
    # on demand (their insmod or mount fails with ENOENT without it).
    "crc32c_generic",
    "overlay",
    "button",
    "evdev",
    "virtio_rng",
    "vmw_vsock_virtio_transport",
    # The agent lists the VM's listeners with sock_diag (TCP and UDP, IPv4 and IPv6).
    "inet_diag",
    "tcp_diag",
    "udp_diag",
    # The agent holds first packets to VM ports with no listener (proxy/hold): an nf_tables
    # table with a socket lookup and a queue, read over nfnetlink_queue.
    "nf_tables",
    "nft_socket",
    "nft_queue",
    "nfnetlink_queue",
    # The Docker Engine in the guest (vm/engine/guest_engine.py): its data disk (ext4 on
    # virtio-blk), overlay2, the default bridge with veth pairs, and dockerd's iptables rules
    # (Debian's iptables is iptables-nft: xt matches through nft_compat).
    "virtio_blk",
    "ext4",
    "dummy",  # holds host.docker.internal's address in a guest with no network
    "bridge",
    "br_netfilter",
    "veth",
    "nft_compat",
    "nft_chain_nat",
    "nft_nat",  # the host gateway's dnat
    "nft_masq",
    "xt_addrtype",
    "xt_conntrack",
    "xt_MASQUERADE",
    "xt_nat",
    "xt_tcpudp",
    "ipt_REJECT",
)
DEBIAN_KERNEL_META = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
IMAGE_FORMAT = 2  # bump when the layout of the initramfs changes


class ImageBuildError(VMError):
    """The image cannot be built; the message names the problem and the fix."""


@dataclass(frozen=True)
class KernelSource:
    """A kernel and, when it uses modules, its ``lib/modules/<version>`` folder."""

    vmlinuz: Path
    modules_dir: Path | None
    version: str


@dataclass(frozen=True)
class VMImage:
    """A built boot image: what QEMU's ``-kernel`` and ``-initrd`` take.

    ``kernel`` is the uncompressed ``vmlinux`` when the kernel has a PVH entry (faster to
    boot), else the ``vmlinuz`` bzImage as given.
    """

    kernel: Path
    initramfs: Path
    kernel_version: str
    modules: tuple[str, ...]
    directory: Path


# ---------------------------------------------------------------------------- modules.dep


def module_name(path: str) -> str:
    """``kernel/drivers/char/hw_random/virtio-rng.ko.xz`` -> ``virtio_rng`` (the kernel's name)."""
    base = path.rsplit("/", 1)[-1]
    base = base.split(".ko", 1)[0]
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """``modules.dep`` as {module path: [paths of every module it needs]}."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, rest = line.partition(":")
        deps[path.strip()] = rest.split()
    return deps


def parse_modules_builtin(text: str) -> set[str]:
    return {module_name(line.strip()) for line in text.splitlines() if line.strip()}


def resolve_modules(
    modules_dep: Mapping[str, Sequence[str]],
    builtin: Iterable[str],
    required: Sequence[str],
    optional: Sequence[str] = (),
) -> list[str]:
    """The module paths to load, every dependency before the modules that need it.

    Modules built into the kernel are left out. A required module that is neither a module
    nor built in is an error; a missing optional one is skipped.
    """
    by_name = {module_name(path): path for path in modules_dep}
    built_in = {name.replace("-", "_") for name in builtin}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(path: str) -> None:
        if path in order:
            return
        if path in visiting:
            raise ImageBuildError(f"modules.dep has a dependency cycle through {path}")
        visiting.add(path)
        for dep in modules_dep.get(path, ()):
            if dep not in modules_dep:
                raise ImageBuildError(f"modules.dep: {path} needs {dep}, which it does not list")
            visit(dep)
        visiting.discard(path)
        order.append(path)

    for wanted, must in [(name, True) for name in required] + [(n, False) for n in optional]:
        name = wanted.replace("-", "_")
        if name in built_in:
            continue
        path = by_name.get(name)
        if path is None:
            if must:
                raise ImageBuildError(
                    f"the kernel has no module {name!r} and does not build it in: the micro-VM "
                    "needs virtio, 9p and virtio_console; use Debian's kernel (the default) or "
                    "one configured with them"
                )
            continue
        visit(path)
    return order


def ensure_modules_dep(modules_dir: Path) -> Path:
    """``modules.dep`` of a ``lib/modules/<version>`` folder, made with depmod when absent."""
    dep = modules_dir / "modules.dep"
    if dep.is_file():
        return dep
    if modules_dir.parent.name != "modules" or modules_dir.parent.parent.name != "lib":
        raise ImageBuildError(
            f"{modules_dir} has no modules.dep and is not a lib/modules/<version> folder: "
            "run depmod for it, or name the lib/modules/<version> folder"
        )
    depmod = shutil.which("depmod") or next(
        (p for p in ("/usr/sbin/depmod", "/sbin/depmod") if os.access(p, os.X_OK)), None
    )
    if depmod is None:
        raise ImageBuildError(
            f"{modules_dir} has no modules.dep and depmod is not installed: "
            "install kmod (apt-get install kmod)"
        )
    base = modules_dir.parent.parent.parent
    _run([depmod, "-b", str(base), modules_dir.name], what="depmod")
    return dep


# ---------------------------------------------------------------------------- kernels


def bzimage_version(vmlinuz: Path) -> str:
    """The release string a bzImage carries in its setup header (e.g. ``6.1.0-28-amd64``)."""
    try:
        with vmlinuz.open("rb") as f:
            head = f.read(0x10200)  # the version pointer is 16-bit, past 0x200
    except OSError as e:
        raise ImageBuildError(f"cannot read the kernel {vmlinuz}: {e.strerror}") from e
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        raise ImageBuildError(f"{vmlinuz} is not an x86 bzImage kernel (no setup header)")
    (offset,) = struct.unpack_from("<H", head, 0x20E)
    start = offset + 0x200
    if offset == 0 or start >= len(head):
        raise ImageBuildError(f"{vmlinuz}: the kernel's setup header names no version")
    raw = head[start : head.index(b"\0", start)]
    return raw.decode("ascii", "replace").split()[0]


def _decompress_payload(payload: bytes) -> bytes | None:
    """The kernel's ELF image from a bzImage payload, for the compressions stdlib reads."""
    try:
        if payload.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(wbits=31).decompress(payload)
        if payload.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(payload)
        if payload.startswith(b"\x5d\x00"):
            return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(payload)
        if payload.startswith(b"BZh"):
            return bz2.BZ2Decompressor().decompress(payload)
    except (lzma.LZMAError, OSError, zlib.error, EOFError):
        return None
    return None  # zstd, lz4, lzo: boot the bzImage itself


def _has_pvh_entry(elf: bytes) -> bool:
    """True when an ELF kernel carries the Xen PVH entry note (QEMU can boot it directly)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and note_type == 18:  # XEN_ELFNOTE_PHYS32_ENTRY
                return True
            pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return False


def pvh_vmlinux(vmlinuz: Path) -> bytes | None:
    """The uncompressed kernel of a bzImage, when QEMU can boot it by its PVH entry.

    Under TCG that skips the firmware's real-mode setup and the emulated decompression of the
    kernel: it halves the time to userspace (about 4.3 s of CPU down to 1.8 s here).
    """
    data = vmlinuz.read_bytes()
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        return None
    setup_sects = data[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    elf = _decompress_payload(data[start : start + payload_length])
    return elf if elf is not None and _has_pvh_entry(elf) else None


def user_kernel(vmlinuz: Path, modules_dir: Path | None) -> KernelSource:
    """A kernel the user names; ``modules_dir`` is its ``lib/modules/<version>`` (or None)."""
    if not vmlinuz.is_file():
        raise ImageBuildError(f"the kernel {vmlinuz} does not exist: give the path of a vmlinuz")
    version = bzimage_version(vmlinuz)
    if modules_dir is not None and not modules_dir.is_dir():
        raise ImageBuildError(
            f"the modules folder {modules_dir} does not exist: give lib/modules/<version>"
        )
    return KernelSource(vmlinuz=vmlinuz, modules_dir=modules_dir, version=version)


def host_kernel() -> KernelSource | None:
    """The running kernel, when /boot has it readable and its modules are installed."""
    release = os.uname().release
    vmlinuz = Path("/boot") / f"vmlinuz-{release}"
    modules = Path("/lib/modules") / release
    if os.access(vmlinuz, os.R_OK) and (modules / "modules.dep").is_file():
        return KernelSource(vmlinuz=vmlinuz, modules_dir=modules, version=release)
    return None


def _run(argv: Sequence[str], *, what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, check=False, timeout=600
        )
    except FileNotFoundError as e:
        raise ImageBuildError(f"{what}: {argv[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise ImageBuildError(f"{what}: {' '.join(argv)} took over 10 minutes") from e
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ImageBuildError(f"{what} failed ({' '.join(argv)}): {' / '.join(detail)}")
    return done.stdout


def _apt_fetch(package: str, dest: Path) -> None:
    """Download one Debian package with apt-get and unpack it into ``dest``."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise ImageBuildError(
            f"cannot fetch {package}: apt-get/dpkg-deb are missing (not a Debian-like host); "
            "name a kernel with --kernel PATH --modules DIR"
        )
    with tempfile.TemporaryDirectory(prefix="hostnet-apt-") as tmp:
        os.chmod(tmp, 0o755)  # apt's sandbox user must be able to write the download
        _run(["apt-get", "download", "-q", package], what=f"downloading {package}", cwd=Path(tmp))
        debs = sorted(Path(tmp).glob("*.deb"))
        if not debs:
            raise ImageBuildError(f"apt-get download {package} produced no .deb")
        _run(["dpkg-deb", "-x", str(debs[0]), str(dest)], what=f"unpacking {package}")


def _debian_kernel_package() -> str:
    """The versioned package that ``linux-image-amd64`` depends on right now."""
    out = _run(["apt-cache", "depends", DEBIAN_KERNEL_META], what="apt-cache depends")
    for line in out.splitlines():
        word = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and word.startswith("linux-image-"):
            return word
    raise ImageBuildError(
        f"apt knows no {DEBIAN_KERNEL_META}: run apt-get update, or name a kernel with --kernel"
    )


def _cached_debian_kernels(cache_dir: Path) -> list[Path]:
    root = cache_dir / "kernels"
    found = [p for p in root.glob("linux-image-*") if (p / ".complete").exists()]
    return sorted(found, key=lambda p: (p / ".complete").stat().st_mtime, reverse=True)


def _kernel_in_tree(tree: Path) -> KernelSource:
    vmlinuzes = sorted((tree / "boot").glob("vmlinuz-*"))
    if not vmlinuzes:
        raise ImageBuildError(f"{tree} holds no boot/vmlinuz-*: delete it to fetch it again")
    version = vmlinuzes[-1].name.removeprefix("vmlinuz-")
    return KernelSource(
        vmlinuz=vmlinuzes[-1], modules_dir=tree / "lib" / "modules" / version, version=version
    )


def debian_kernel(cache_dir: Path, *, refresh: bool = False) -> KernelSource:
    """Debian's current amd64 kernel, fetched into ``CACHE/kernels/`` once."""
    if not refresh:
        cached = _cached_debian_kernels(cache_dir)
        if cached:
            return _kernel_in_tree(cached[0])
    if platform.machine() not in ("x86_64", "AMD64"):
        raise ImageBuildError(
            f"the micro-VM runs x86_64 kernels; this host is {platform.machine()}: "
            "name a kernel with --kernel"
        )
    package = _debian_kernel_package()
    tree = cache_dir / "kernels" / package
    if not (tree / ".complete").exists():
        shutil.rmtree(tree, ignore_errors=True)
        partial = tree.with_name(tree.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _apt_fetch(package, partial)
        kernel = _kernel_in_tree(partial)
        assert kernel.modules_dir is not None
        ensure_modules_dep(kernel.modules_dir)
        partial.rename(tree)
    (tree / ".complete").touch()
    return _kernel_in_tree(tree)


def default_kernel(cache_dir: Path, *, refresh: bool = False) -> KernelSource:
    """Debian's kernel (cached or fetched); the host's own when apt cannot fetch one."""
    if not refresh and _cached_debian_kernels(cache_dir):
        return debian_kernel(cache_dir)
    if shutil.which("apt-get") is None:
        host = host_kernel()
        if host is not None:
            return host
    return debian_kernel(cache_dir, refresh=refresh)


# ---------------------------------------------------------------------------- busybox


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (statically linked)."""
    try:
        with path.open("rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
                return False
            (phoff,) = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    pt_interp = 3
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != pt_interp for i in range(phnum))


def static_busybox(cache_dir: Path) -> Path:
    """A statically linked busybox: the host's (busybox-static) or one fetched into the cache."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if is_static_elf(Path(candidate)):
            return Path(candidate)
    fetched = cache_dir / "busybox-static"
    binary = fetched / "bin" / "busybox"
    if not is_static_elf(binary):
        shutil.rmtree(fetched, ignore_errors=True)
        _apt_fetch(BUSYBOX_PACKAGE, fetched)
        if not is_static_elf(binary):
            raise ImageBuildError(f"{BUSYBOX_PACKAGE} did not provide a static bin/busybox")
    return binary


# ---------------------------------------------------------------------------- initramfs


class CpioWriter:
    """Writes a cpio archive in the kernel's "newc" format (what an initramfs is)."""

    def __init__(self, out: io.BufferedIOBase) -> None:
        self._out = out
        self._ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % v for v in fields)
        self._out.write(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
        self._out.write(data + b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, 0o020000 | mode, rdev=(major, minor))

    def close(self) -> None:
        self._entry("TRAILER!!!", 0)


def _module_bytes(path: Path) -> bytes:
    """A module's plain ELF bytes (busybox's insmod takes them uncompressed)."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise ImageBuildError(f"{path} is zstd-compressed: install zstd (apt-get install zstd)")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def write_initramfs(
    out: Path, busybox: Path, modules_dir: Path | None, modules: Sequence[str]
) -> None:
    """Write the gzip'd cpio initramfs: busybox, /init, the modules and their load order."""
    raw = io.BytesIO()
    cpio = CpioWriter(raw)
    for d in ("bin", "dev", "etc", "etc/hostnet", "lib", "lib/modules", "proc", "sys", "newroot"):
        cpio.directory(d)
    cpio.char_device("dev/console", 5, 1)
    cpio.char_device("dev/null", 1, 3, 0o666)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    names = []
    for rel in modules:
        assert modules_dir is not None
        name = module_name(rel) + ".ko"
        cpio.file(f"lib/modules/{name}", _module_bytes(modules_dir / rel))
        names.append(name)
    cpio.file("etc/hostnet/modules", "".join(n + "\n" for n in names).encode())
    cpio.close()
    out.write_bytes(gzip.compress(raw.getvalue(), compresslevel=6, mtime=0))


def _image_key(kernel: KernelSource, busybox: Path, modules: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(f"format={IMAGE_FORMAT}\n".encode())
    h.update(INIT_SCRIPT.encode())
    h.update("\n".join(modules).encode())
    for path in (kernel.vmlinuz, busybox):
        st = path.stat()
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def _prune_images(current: Path) -> None:
    """Drop older builds for the same kernel (QEMU reads its files only when it starts)."""
    version = current.name.rsplit("-", 1)[0]
    for other in current.parent.glob(f"{version}-*"):
        same_kernel = other.name.rsplit("-", 1)[0] == version
        if other != current and same_kernel and (other / "image.json").exists():
            shutil.rmtree(other, ignore_errors=True)


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """One builder at a time per cache (the daemon, a CLI and tests may race)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_image(
    cache_dir: Path,
    *,
    kernel: Path | None = None,
    modules_dir: Path | None = None,
    refresh: bool = False,
) -> VMImage:
    """The boot image, built into ``cache_dir`` unless an identical one is there already.

    Without ``kernel``, Debian's kernel package is used (fetched once). With ``kernel`` and
    no ``modules_dir``, the kernel must have virtio, 9p and virtio_console built in.
    """
    cache_dir = cache_dir.expanduser().resolve()
    with _locked(cache_dir):
        source = (
            user_kernel(kernel, modules_dir)
            if kernel is not None
            else default_kernel(cache_dir, refresh=refresh)
        )
        if source.modules_dir is not None:
            dep = ensure_modules_dep(source.modules_dir)
            builtin_file = source.modules_dir / "modules.builtin"
            builtin = (
                parse_modules_builtin(builtin_file.read_text()) if builtin_file.exists() else set()
            )
            modules = resolve_modules(
                parse_modules_dep(dep.read_text()), builtin, REQUIRED_MODULES, OPTIONAL_MODULES
            )
        else:
            modules = []
        busybox = static_busybox(cache_dir)
        key = _image_key(source, busybox, modules)
        directory = cache_dir / "images" / f"{source.version}-{key}"
        manifest = directory / "image.json"
        if not manifest.exists():
            partial = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
            try:
                elf = pvh_vmlinux(source.vmlinuz)
                if elf is not None:
                    (partial / "vmlinux").write_bytes(elf)
                else:
                    shutil.copyfile(source.vmlinuz, partial / "vmlinuz")
                write_initramfs(partial / "initramfs.img", busybox, source.modules_dir, modules)
                (partial / "image.json").write_text(
                    json.dumps(
                        {
                            "kernel_version": source.version,
                            "kernel_source": str(source.vmlinuz),
                            "modules": [module_name(m) for m in modules],
                            "busybox": str(busybox),
                            "pvh": elf is not None,
                            "format": IMAGE_FORMAT,
                        },
                        indent=2,
                    )
                )
                directory.parent.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(directory, ignore_errors=True)
                partial.rename(directory)
                _prune_images(directory)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
        kernel_file = directory / "vmlinux"
        return VMImage(
            kernel=kernel_file if kernel_file.exists() else directory / "vmlinuz",
            initramfs=directory / "initramfs.img",
            kernel_version=source.version,
            modules=tuple(module_name(m) for m in modules),
            directory=directory,
        )
