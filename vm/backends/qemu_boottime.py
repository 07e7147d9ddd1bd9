"""Measure the micro-VM's boot: time to the init's ready line, to Python running, to stopped.

    python -m vm.backends.qemu_boottime [--runs 3] [--accel auto|kvm|tcg] [--cache DIR]

Each run boots a VM whose command is the host's Python printing a line on the console, then
stops it (ACPI power-off). Times are wall-clock on the host, from launching QEMU.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from vm.backends.qemu import QemuConfig, QemuError, QemuVM

PY_MARKER = "hostnet-boottime: python up"
GUEST = f"import time; print({PY_MARKER!r}, flush=True); time.sleep(600)"


async def one_boot(cache: Path, accel: str) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="hn-boot-") as tmp:
        vm = QemuVM(
            QemuConfig(
                vm_dir=Path(tmp) / "qemu",
                command=[sys.executable, "-c", GUEST],
                image_cache_dir=cache,
                accel=accel,
            )
        )
        await vm.start()  # builds the image and probes KVM first if needed: not timed here
        assert vm.boot_seconds is not None and vm.accel is not None
        launched = time.monotonic() - vm.boot_seconds
        while PY_MARKER not in vm.console_log_path.read_text(errors="replace"):
            if not vm.running:
                raise QemuError("the VM stopped: " + (await vm.wait()).describe())
            await asyncio.sleep(0.02)
        python_up = time.monotonic() - launched
        stopping = time.monotonic()
        ended = await vm.stop(timeout=30)
        return {
            "accel": vm.accel.accel,
            "ready": vm.boot_seconds,
            "python": python_up,
            "stop": time.monotonic() - stopping,
            "how": ended.how,
        }


async def main_async(runs: int, cache: Path, accel: str) -> int:
    results = []
    for i in range(runs):
        r = await one_boot(cache, accel)
        results.append(r)
        print(
            f"run {i + 1}: accel={r['accel']} ready={r['ready']:.2f}s "
            f"python={r['python']:.2f}s stop={r['stop']:.2f}s ({r['how']})"
        )
    for key in ("ready", "python", "stop"):
        values = [float(r[key]) for r in results]
        print(f"median {key}: {statistics.median(values):.2f}s (min {min(values):.2f}s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vm.backends.qemu_boottime")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    parser.add_argument(
        "--cache", type=Path, default=Path("~/.cache/hostnet/vm-images"), help="image cache"
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(main_async(args.runs, args.cache.expanduser(), args.accel))
    except QemuError as e:
        print(f"qemu_boottime: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
