"""The PyInstaller bundle's entry point: ``hostnet`` (app.cli), and ``-m MODULE`` like Python.

The daemon starts helpers as ``sys.executable -m vm.agent`` and ``-m vm.backends.netns_setup``;
in the bundle ``sys.executable`` is this program, so it runs those modules the way
``python -m`` would.
"""

from __future__ import annotations

import runpy
import sys


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = [module, *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    from app.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
