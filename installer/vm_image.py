"""Build (or find, when cached) the micro-VM's kernel and initramfs.

    python -m installer.vm_image --out DIR [--refresh]
    python -m installer.vm_image --out DIR --kernel VMLINUZ [--modules lib/modules/VERSION]

Without ``--kernel`` it uses Debian's ``linux-image-amd64`` kernel, fetched with apt-get once.
The work is done by :mod:`vm.backends.qemu_image`, which the QEMU backend also calls on first
start; this is the same thing from a shell.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from vm.backends.qemu_image import ImageBuildError, ensure_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m installer.vm_image", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="cache folder for kernels and images"
    )
    parser.add_argument("--kernel", type=Path, help="a bzImage to use instead of Debian's kernel")
    parser.add_argument(
        "--modules",
        type=Path,
        help="the kernel's lib/modules/<version> folder (omit if virtio and 9p are built in)",
    )
    parser.add_argument(
        "--refresh", action="store_true", help="fetch Debian's current kernel again"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.modules is not None and args.kernel is None:
        parser.error("--modules goes with --kernel")
    started = time.monotonic()
    try:
        image = ensure_image(
            args.out, kernel=args.kernel, modules_dir=args.modules, refresh=args.refresh
        )
    except ImageBuildError as e:
        print(f"vm_image: {e}", file=sys.stderr)
        return 1
    result = {
        "kernel": str(image.kernel),
        "initramfs": str(image.initramfs),
        "kernel_version": image.kernel_version,
        "modules": list(image.modules),
        "seconds": round(time.monotonic() - started, 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {' '.join(value) if isinstance(value, list) else value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
