"""Accelerator choice: forced by HOSTNET_QEMU_ACCEL, else a real KVM probe boot, else TCG."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vm.backends.qemu_accel import (
    ACCEL_ENV,
    AccelError,
    choose_accel,
    kvm_device_problem,
    probe_accel,
    requested_accel,
)
from vm.backends.qemu_image import VMImage, ensure_image

IMAGE_CACHE = Path(os.environ.get("HOSTNET_TEST_VM_CACHE", "/var/tmp/hostnet-test-vm-cache"))
QEMU = "qemu-system-x86_64"


@pytest.fixture(scope="module")
def image() -> VMImage:
    return ensure_image(IMAGE_CACHE)


def test_requested_accel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ACCEL_ENV, raising=False)
    assert requested_accel("auto") == "auto"
    monkeypatch.setenv(ACCEL_ENV, "TCG")
    assert requested_accel("auto") == "tcg"
    assert requested_accel("kvm") == "kvm"  # an explicit setting wins over the environment
    monkeypatch.setenv(ACCEL_ENV, "hvf")
    with pytest.raises(AccelError, match=f"{ACCEL_ENV}=hvf is not an accelerator"):
        requested_accel("auto")


async def test_forced_tcg_skips_the_probe(
    monkeypatch: pytest.MonkeyPatch, image: VMImage, tmp_path: Path
) -> None:
    monkeypatch.setenv(ACCEL_ENV, "tcg")
    choice = await choose_accel("auto", QEMU, image, tmp_path / "probe.json")
    assert choice.accel == "tcg"
    assert not (tmp_path / "probe.json").exists()


@pytest.mark.slow
@pytest.mark.vm
@pytest.mark.timeout(90)
async def test_probe_boots_under_tcg(image: VMImage) -> None:
    """The probe boot reaches the guest's /init under TCG (so a KVM verdict means something)."""
    works, why = await probe_accel("tcg", QEMU, image, timeout=60)
    assert works, why


@pytest.mark.slow
@pytest.mark.vm
@pytest.mark.timeout(60)
async def test_auto_choice_is_cached(
    monkeypatch: pytest.MonkeyPatch, image: VMImage, tmp_path: Path
) -> None:
    """auto probes KVM once (when /dev/kvm is usable) and remembers the verdict."""
    monkeypatch.delenv(ACCEL_ENV, raising=False)
    cache = tmp_path / "probe.json"
    first = await choose_accel("auto", QEMU, image, cache, probe_timeout=6)
    assert first.accel in ("kvm", "tcg") and first.reason
    if kvm_device_problem() is not None:
        assert first.accel == "tcg" and first.reason == kvm_device_problem()
        return
    verdicts = json.loads(cache.read_text())
    assert [v["kvm"] for v in verdicts.values()] == [first.accel == "kvm"]
    second = await choose_accel("auto", QEMU, image, cache, probe_timeout=0.001)
    assert second == first  # from the cache: a 1 ms probe could not have passed
