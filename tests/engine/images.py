"""The test image: a root filesystem made from this machine's Debian binaries, imported.

No image registry is reachable, so nothing is pulled: busybox (sh, httpd, wget, ...) from
busybox-static and OpenBSD netcat with the libraries it loads, packed as a tar and given
to the engine by ``docker import``. It stands in for nicolaka/netshoot in the seed's examples.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import docker

IMAGE = "hostnet-test/netshoot:latest"
BUSYBOX_APPLETS = ("sh", "httpd", "wget", "cat", "echo", "sleep", "ls", "mkdir", "true", "env")


def _add_file(tar: tarfile.TarFile, source: Path, name: str, mode: int = 0o755) -> None:
    data = source.read_bytes()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    tar.addfile(info)


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def shared_libraries(binary: Path) -> list[Path]:
    """The libraries ldd says ``binary`` loads, the dynamic loader included."""
    output = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    libraries = []
    for line in output.stdout.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            libraries.append(Path(path))
    return libraries


def rootfs_tar() -> bytes:
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    netcat = Path("/bin/nc.openbsd")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in (
            "bin",
            "usr",
            "usr/bin",
            "lib",
            "lib/x86_64-linux-gnu",
            "lib64",
            "etc",
            "tmp",
            "www",
        ):
            _add_dir(tar, folder)
        _add_file(tar, busybox, "bin/busybox")
        for applet in BUSYBOX_APPLETS:
            _add_link(tar, f"bin/{applet}", "busybox")
        _add_file(tar, netcat, "usr/bin/nc")
        for library in shared_libraries(netcat):
            _add_file(tar, library.resolve(), str(library).lstrip("/"))
        page = b"hello from the container\n"
        info = tarfile.TarInfo("www/index.html")
        info.size, info.mode = len(page), 0o644
        tar.addfile(info, io.BytesIO(page))
    return buffer.getvalue()


def build_test_image(client: docker.DockerClient) -> str:
    """Import the image into the engine ``client`` talks to; returns its name."""
    client.api.import_image_from_data(
        rootfs_tar(),
        repository=IMAGE.split(":")[0],
        tag="latest",
        changes=['CMD ["/bin/sh"]', "ENV PATH=/usr/bin:/bin"],
    )
    return IMAGE


def main() -> int:
    """``python -m tests.engine.images``: import the image into the engine DOCKER_HOST names."""
    client = docker.from_env()
    print(build_test_image(client))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
