"""The micro-VM image builder: module dependencies from a real modules.dep, the initramfs.

The kernel is Debian's (fetched once into the shared test cache, as the QEMU tests use it),
or the host's own when it has modules.dep. The initramfs is read back with busybox's cpio.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vm.backends.qemu_guest_init import INIT_SCRIPT
from vm.backends.qemu_image import (
    OPTIONAL_MODULES,
    REQUIRED_MODULES,
    CpioWriter,
    ImageBuildError,
    KernelSource,
    bzimage_version,
    default_kernel,
    ensure_image,
    is_static_elf,
    module_name,
    parse_modules_builtin,
    parse_modules_dep,
    pvh_vmlinux,
    resolve_modules,
)

IMAGE_CACHE = Path(os.environ.get("HOSTNET_TEST_VM_CACHE", "/var/tmp/hostnet-test-vm-cache"))
BUSYBOX = Path("/bin/busybox")


@pytest.fixture(scope="module")
def kernel() -> KernelSource:
    """A real kernel with its real lib/modules tree and modules.dep."""
    source = default_kernel(IMAGE_CACHE)
    assert source.modules_dir is not None
    return source


def test_module_names_follow_the_kernel() -> None:
    assert module_name("kernel/drivers/char/hw_random/virtio-rng.ko") == "virtio_rng"
    assert module_name("kernel/fs/9p/9p.ko.xz") == "9p"
    assert module_name("updates/dkms/foo_bar.ko.zst") == "foo_bar"


def test_resolution_on_the_real_modules_dep(kernel: KernelSource) -> None:
    assert kernel.modules_dir is not None
    dep = parse_modules_dep((kernel.modules_dir / "modules.dep").read_text())
    builtin = parse_modules_builtin((kernel.modules_dir / "modules.builtin").read_text())
    order = resolve_modules(dep, builtin, REQUIRED_MODULES, OPTIONAL_MODULES)
    names = [module_name(p) for p in order]

    # Every wanted module that is not built in is there, once.
    for wanted in (*REQUIRED_MODULES, *OPTIONAL_MODULES):
        assert wanted in names or wanted in builtin
    assert len(names) == len(set(names))
    # Every module comes after everything modules.dep says it needs...
    for i, path in enumerate(order):
        assert set(dep[path]) <= set(order[:i]), f"{path} loaded before its dependencies"
    # ...and nothing else is pulled in.
    needed = {p for w in (*REQUIRED_MODULES, *OPTIONAL_MODULES) for p in dep if module_name(p) == w}
    needed |= {d for p in needed for d in dep[p]}
    assert set(order) == needed
    # Debian's 9p needs its transport library and netfs/fscache.
    if "9p" in names:
        assert names.index("9pnet") < names.index("9p")
        assert {"netfs", "fscache"} <= set(names[: names.index("9p")])


def test_resolution_rules() -> None:
    dep = {
        "kernel/a.ko": ["kernel/b-c.ko", "kernel/d.ko"],
        "kernel/b-c.ko": ["kernel/d.ko"],
        "kernel/d.ko": [],
        "kernel/loop1.ko": ["kernel/loop2.ko"],
        "kernel/loop2.ko": ["kernel/loop1.ko"],
    }
    assert resolve_modules(dep, set(), ["a"]) == ["kernel/d.ko", "kernel/b-c.ko", "kernel/a.ko"]
    assert resolve_modules(dep, set(), ["b_c", "a"]) == [
        "kernel/d.ko",
        "kernel/b-c.ko",
        "kernel/a.ko",
    ]
    assert resolve_modules(dep, {"a"}, ["a"], ["nope"]) == []  # built in; optional missing
    with pytest.raises(ImageBuildError, match="no module 'virtio_console'"):
        resolve_modules(dep, set(), ["virtio_console"])
    with pytest.raises(ImageBuildError, match="cycle"):
        resolve_modules(dep, set(), ["loop1"])


def test_kernel_version_from_the_bzimage(kernel: KernelSource, tmp_path: Path) -> None:
    assert bzimage_version(kernel.vmlinuz) == kernel.version
    junk = tmp_path / "vmlinuz"
    junk.write_bytes(b"\0" * 4096)
    with pytest.raises(ImageBuildError, match="not an x86 bzImage"):
        bzimage_version(junk)
    assert pvh_vmlinux(junk) is None


def test_static_busybox_detection() -> None:
    assert is_static_elf(BUSYBOX)
    assert not is_static_elf(Path(sys.executable).resolve())  # python is dynamically linked
    assert not is_static_elf(Path(__file__))


def _list_cpio(archive: bytes, tmp_path: Path) -> list[str]:
    listing = subprocess.run(
        [str(BUSYBOX), "cpio", "-t"], input=archive, capture_output=True, check=True
    )
    return listing.stdout.decode().split()


def test_cpio_writer_is_read_by_cpio(tmp_path: Path) -> None:
    out = tmp_path / "a.cpio"
    with out.open("wb") as f:
        cpio = CpioWriter(f)
        cpio.directory("etc")
        cpio.file("etc/hello", b"hi there\n")
        cpio.file("odd", b"x" * 5, 0o755)
        cpio.symlink("link", "etc/hello")
        cpio.close()
    assert _list_cpio(out.read_bytes(), tmp_path) == ["etc", "etc/hello", "odd", "link"]
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(
        [str(BUSYBOX), "cpio", "-id"],
        input=out.read_bytes(),
        cwd=dest,
        check=True,
        capture_output=True,
    )
    assert (dest / "etc/hello").read_bytes() == b"hi there\n"
    assert (dest / "odd").read_bytes() == b"xxxxx" and os.access(dest / "odd", os.X_OK)
    assert os.readlink(dest / "link") == "etc/hello"


def test_init_script_parses() -> None:
    done = subprocess.run([str(BUSYBOX), "sh", "-n", "-c", INIT_SCRIPT], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def test_image_is_built_once_and_holds_init_and_modules(
    kernel: KernelSource, tmp_path: Path
) -> None:
    image = ensure_image(IMAGE_CACHE)
    again = ensure_image(IMAGE_CACHE)
    assert again == image
    assert image.initramfs.stat().st_mtime_ns == again.initramfs.stat().st_mtime_ns
    assert image.directory.name.startswith(image.kernel_version + "-")
    # Debian's kernel has a PVH entry: the image holds it uncompressed, QEMU boots it directly.
    assert image.kernel.name == "vmlinux"
    assert pvh_vmlinux(kernel.vmlinuz) == image.kernel.read_bytes()

    raw = gzip.decompress(image.initramfs.read_bytes())
    names = _list_cpio(raw, tmp_path)
    assert {"init", "bin/busybox", "dev/console", "etc/hostnet/modules"} <= set(names)
    dest = tmp_path / "root"
    dest.mkdir()
    subprocess.run(
        [str(BUSYBOX), "cpio", "-id"], input=raw, cwd=dest, check=True, capture_output=True
    )
    assert (dest / "init").read_text() == INIT_SCRIPT
    listed = (dest / "etc/hostnet/modules").read_text().split()
    assert listed == [m + ".ko" for m in image.modules]
    for name in listed:
        assert (dest / "lib/modules" / name).read_bytes()[:4] == b"\x7fELF"
