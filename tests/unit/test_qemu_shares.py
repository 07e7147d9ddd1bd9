"""The list of host folders a QEMU guest sees, and the user's shared folders it takes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vm.backends.errors import VMError
from vm.backends.options import check_options
from vm.backends.qemu import QemuConfig, QemuError, QemuVM
from vm.backends.qemu_backend import OPTIONS_SCHEMA
from vm.backends.qemu_image import VMImage
from vm.backends.qemu_shares import (
    MAX_SHARES,
    Share,
    ShareError,
    agent_runtime,
    guest_shares,
    write_guest_etc,
)


def test_the_guest_sees_usr_and_what_runs_the_agent_and_nothing_of_homes() -> None:
    shares = guest_shares(extra=agent_runtime())
    paths = [share.path for share in shares]
    assert Path("/usr") in paths
    assert not any(share.writable for share in shares)
    assert Path("/") not in paths
    for home in (Path("/root"), Path("/home"), Path("/etc"), Path("/var")):
        assert home not in paths
    runtime = Path(sys.base_prefix).resolve()
    assert any(runtime == p or p in runtime.parents for p in paths)
    assert len(paths) == len(set(paths))


def test_a_folder_inside_another_export_is_not_exported_twice(tmp_path: Path) -> None:
    inner = tmp_path / "repo" / ".venv"
    inner.mkdir(parents=True)
    shares = guest_shares(extra=[tmp_path / "repo", inner])
    assert Share(tmp_path / "repo") in shares
    assert all(share.path != inner for share in shares)


def test_a_user_folder_is_writable_even_inside_a_read_only_export(tmp_path: Path) -> None:
    (tmp_path / "repo" / "data").mkdir(parents=True)
    shares = guest_shares(extra=[tmp_path / "repo"], shared_folders=[str(tmp_path / "repo/data")])
    assert shares[-1] == Share(tmp_path / "repo" / "data", writable=True)
    assert shares.index(Share(tmp_path / "repo")) < len(shares) - 1  # outermost first


@pytest.mark.parametrize(
    ("folder", "says"),
    [
        ("relative/path", "not an absolute path"),
        ("/nonexistent/hostnet-folder", "not a folder on this machine"),
        ("/", "whole root"),
    ],
)
def test_bad_shared_folders_are_named_with_the_fix(folder: str, says: str) -> None:
    with pytest.raises(ShareError, match=says):
        guest_shares(shared_folders=[folder])


def test_too_many_folders_say_to_share_a_parent(tmp_path: Path) -> None:
    folders = []
    for i in range(MAX_SHARES + 1):
        (tmp_path / f"f{i}").mkdir()
        folders.append(str(tmp_path / f"f{i}"))
    with pytest.raises(ShareError, match="share a common parent folder"):
        guest_shares(shared_folders=folders)


def test_the_qemu_command_line_exports_each_folder_alone(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    vm = QemuVM(
        QemuConfig(
            vm_dir=tmp_path / "vm", command=["true"], shared_folders=[str(tmp_path / "work")]
        )
    )
    image = VMImage(Path("/boot/vmlinuz"), Path("/boot/initrd"), "6.1", (), tmp_path)
    argv = " ".join(vm.qemu_argv(image, "tcg"))
    assert "path=/," not in argv
    assert f"path={tmp_path / 'work'},security_model=none,multidevs" in argv  # writable
    assert "path=/usr,security_model=none,readonly=on" in argv


def test_a_bad_folder_fails_the_vm_start_with_the_reason(tmp_path: Path) -> None:
    vm = QemuVM(QemuConfig(vm_dir=tmp_path / "vm", command=["true"], shared_folders=["rel"]))
    with pytest.raises(QemuError, match="not an absolute path"):
        vm.shares()


def test_the_setting_reaches_the_backend_checked() -> None:
    options = {"shared_folders": ["/srv"]}
    assert check_options("qemu", OPTIONS_SCHEMA, options) == options
    with pytest.raises(VMError, match="shared_folders=\\[3\\] has 3, which is not a string"):
        check_options("qemu", OPTIONS_SCHEMA, {"shared_folders": [3]})


def test_the_guests_etc_holds_no_host_secret(tmp_path: Path) -> None:
    write_guest_etc(tmp_path)
    names = {path.name for path in tmp_path.iterdir()}
    assert names <= {
        "passwd", "group", "hosts", "hostname", "resolv.conf", "ld.so.cache", "nsswitch.conf",
        "alternatives",
    }  # fmt: skip
    assert all(link.is_symlink() for link in (tmp_path / "alternatives").iterdir())
    assert "shadow" not in names
    assert (tmp_path / "passwd").read_text().startswith("root:x:0:0:")
