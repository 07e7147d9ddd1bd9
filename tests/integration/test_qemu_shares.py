"""What of the host a real QEMU guest (TCG) sees: /usr, what runs the agent, and the user's
shared folders; not the host's home folders, nor its /etc."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_qemu_boot import make_vm, vm_image_cache  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="the test writes a file under /root"),
]

GUEST_CHECKS = r"""
import os, sys
def read(path):
    try:
        with open(path) as f:
            return "read:" + f.read().strip()
    except OSError as e:
        return f"refused:{e.__class__.__name__}"
secret, shared = sys.argv[1], sys.argv[2]
print("check home-secret", read(secret), flush=True)
print("check root-listing", ",".join(sorted(os.listdir("/root"))) or "-", flush=True)
print("check shadow", read("/etc/shadow"), flush=True)
print("check shared", read(shared + "/from-host.txt"), flush=True)
with open(shared + "/from-guest.txt", "w") as f:
    f.write("written in the guest\n")
import vm.agent.server, vm.agent.__main__, uvloop, pyroute2
print("check agent-imports ok", flush=True)
"""


@pytest.fixture
def home_secret() -> Iterator[Path]:
    """A file in the host's home folder for root, as a user's keys would be."""
    path = Path("/root") / f".hostnet-test-secret-{secrets.token_hex(6)}"
    path.write_text("host secret\n")
    try:
        yield path
    finally:
        path.unlink()


def checks(console: str) -> dict[str, str]:
    found = {}
    for line in console.splitlines():
        if line.startswith("check "):
            _, name, value = line.split(" ", 2)
            found[name] = value
    return found


@pytest.mark.timeout(200)
async def test_the_guest_sees_no_home_folder_but_its_shared_folders(
    hostnet_home: Path,
    vm_image_cache: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    home_secret: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "from-host.txt").write_text("shared by the user\n")
    vm = make_vm(
        hostnet_home,
        vm_image_cache,
        [sys.executable, "-c", GUEST_CHECKS, str(home_secret), str(shared)],
        shared_folders=[str(shared)],
    )
    await vm.start()
    try:
        ended = await asyncio.wait_for(vm.wait(), 120)
    finally:
        if vm.running:
            await vm.stop(timeout=5)
    console = vm.console_log_path.read_text()
    found = checks(console)
    # /root holds nothing but the way to what runs the agent (a pyenv Python, say)
    under_root = {
        share.path.relative_to("/root").parts[0]
        for share in vm.shares()
        if Path("/root") in share.path.parents
    }
    assert ended.how == "powered off: the guest command exited", console[-3000:]
    assert found.get("home-secret") == "refused:FileNotFoundError", console[-3000:]
    assert found.get("root-listing") == (",".join(sorted(under_root)) or "-"), console[-3000:]
    assert found.get("shadow") == "refused:FileNotFoundError"
    assert found.get("shared") == "read:shared by the user"
    assert found.get("agent-imports") == "ok"
    assert (shared / "from-guest.txt").read_text() == "written in the guest\n"
