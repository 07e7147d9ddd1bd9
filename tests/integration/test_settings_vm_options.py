"""VmOptions checked against the chosen backend's options schema, the same way from the CLI
(the real console script) and the store the control API and the app write through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.paths import user_paths
from app.settings import SettingsStore, SettingValueError, specs
from app.settings.vm_options import backend_names, option_error, vm_options_error

HOSTNET = str(Path(sys.executable).with_name("hostnet"))


def hostnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HOSTNET, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=60
    )


def on_disk() -> dict[str, object]:
    path = user_paths().settings_file
    return json.loads(path.read_text()) if path.exists() else {}


def test_the_schema_offers_the_registry_backends() -> None:
    assert specs()["VmBackend"].enum == backend_names()


def test_a_bad_memory_size_is_refused_by_the_cli(hostnet_home: Path) -> None:
    assert hostnet("settings", "set", "VmBackend", "qemu").returncode == 0
    before = on_disk()
    run = hostnet("settings", "set", "VmOptions", '{"memory_mib": "lots"}')
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        'hostnet settings set: VmOptions: VmOptions for the qemu backend: memory_mib="lots" is '
        "not a whole number.",
        """Example: `hostnet settings set VmOptions '{"memory_mib": 1024}'`.""",
    ]
    assert on_disk() == before


@pytest.mark.parametrize(
    ("backend", "options", "words"),
    [
        ("qemu", {"memory_mib": 64}, "memory_mib=64 is too small: it must be at least 128"),
        ("qemu", {"cpus": 0}, "cpus=0 is too small: it must be at least 1"),
        ("qemu", {"accel": "hvf"}, 'accel="hvf": use "auto", "kvm" or "tcg"'),
        ("qemu", {"bogus": 1}, "there is no option 'bogus'; it takes accel,"),
        ("netns", {"cpus": 2}, "it takes no options, and 'cpus' is one"),
        ("attach", {"transport": "vsock:ANY:5123"}, "the attach backend needs secret_file"),
        (
            "attach",
            {"transport": "ssh://vm", "secret_file": "/s"},
            "is not valid: where the agent listens",
        ),
        ("attach", {"transport": "tcp:10.0.0.2:5123", "secret_file": "s"}, "an absolute path"),
    ],
)
def test_options_that_do_not_fit_the_backend_are_refused(
    hostnet_home: Path, backend: str, options: dict[str, object], words: str
) -> None:
    store = SettingsStore()
    store.set("VmBackend", backend) if backend != "attach" else None
    error = vm_options_error(backend, options)
    assert error is not None and words in error
    with pytest.raises(SettingValueError) as caught:
        store.update({"VmBackend": backend, "VmOptions": options})
    assert words in caught.value.setting.message
    assert caught.value.setting.fix.startswith("Example: `hostnet settings set VmOptions '")


def test_switching_backend_checks_the_options_and_both_can_change_at_once(
    hostnet_home: Path,
) -> None:
    assert hostnet("settings", "set", "VmBackend", "qemu").returncode == 0
    assert hostnet("settings", "set", "VmOptions", '{"memory_mib": 2048}').returncode == 0
    alone = hostnet("settings", "set", "VmBackend", "attach")
    assert alone.returncode == 2
    assert "there is no option 'memory_mib'" in alone.stderr
    assert "Set both at once: `hostnet settings set VmBackend attach VmOptions '" in alone.stderr
    options = '{"transport": "vsock:ANY:5123", "secret_file": "/run/agent.secret"}'
    both = hostnet("settings", "set", "VmBackend", "attach", "VmOptions", options)
    assert both.returncode == 0, both.stderr
    assert on_disk()["VmBackend"] == "attach"
    assert on_disk()["VmOptions"] == json.loads(options)
    odd = hostnet("settings", "set", "VmBackend", "netns", "VmOptions")
    assert odd.returncode == 2 and "'VmOptions' has no value" in odd.stderr


def test_one_option_is_checked_alone_as_the_app_does() -> None:
    assert option_error("qemu", "cpus", 4) is None
    assert option_error("qemu", "cpus", 2.5) == "cpus=2.5 is not a whole number"
    assert option_error("qemu", "memory_mib", True) == "memory_mib=true is not a whole number"
