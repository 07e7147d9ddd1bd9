"""``make reliability``: run the load, fault, bad-input, security, fuzz and soak tests and print
a table of what they measured.

    python -m tests.reliability                      # everything, 10-minute soak, 1M fuzz
    HOSTNET_SOAK_SECONDS=60 python -m tests.reliability
    HOSTNET_FUZZ_RUNS=100000 python -m tests.reliability
    HOSTNET_RACE_TRIALS=1000 (the default here): connect-at-once trials per race case

Exit status: pytest's (0 when every test passed). Extra arguments go to pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.reliability.figures import FIGURES_ENV, RECOVERY_LIMIT, read_figures
from tests.reliability.secret_scan import scan_for_secrets

ROOT = Path(__file__).resolve().parents[2]
SUITE = [
    "tests/integration/test_fault_recovery.py",
    "tests/integration/test_race_free.py",
    "tests/integration/test_qemu_hostnet.py::test_crash_is_reported_and_the_restarted_vm_brings_mirrors_back",
    "tests/integration/test_qemu_hostnet.py::test_a_hung_guest_is_reported_and_restarted",
    "tests/engine/test_engine_qemu.py::test_dockerd_killed_in_the_guest_is_shown_and_started_again",
    "tests/integration/test_fault_transport_cut.py",
    "tests/integration/test_fault_signin.py",
    "tests/integration/test_load_connections.py",
    "tests/integration/test_load_kernel_path.py",
    "tests/integration/test_kernel_path_daemon.py",
    "tests/integration/test_load_ports.py",
    "tests/integration/test_soak.py",
    "tests/integration/test_security_access.py",
    "tests/integration/test_agent_security.py",
    "tests/ui/test_app.py::test_an_admin_lock_disables_the_toggle_with_the_reason",
    "tests/integration/test_bad_input_control_api.py",
    "tests/integration/test_bad_input_data_path.py",
    "tests/unit/test_fuzz_scale.py",
]


def table(figures: list[dict[str, Any]]) -> str:
    order = ["fault", "load", "soak", "bad input", "security", "fuzz"]
    rows = sorted(figures, key=lambda f: order.index(f["section"]) if f["section"] in order else 9)
    width = max([len(f["name"]) for f in rows] + [10])
    lines = [f"{'section':<10} {'what':<{width}} {'measured':>14}  note", "-" * (width + 50)]
    for f in rows:
        value = f["value"]
        shown = (
            f"{value:,.3f} {f['unit']}" if isinstance(value, float) else f"{value:,} {f['unit']}"
        )
        if f["section"] == "fault" and f["unit"] == "s":
            verdict = "ok" if value <= RECOVERY_LIMIT else f"OVER {RECOVERY_LIMIT} s"
            note = f"{verdict}; {f['note']}"
        else:
            note = f["note"]
        lines.append(f"{f['section']:<10} {f['name']:<{width}} {shown:>14}  {note}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="hn-reliability-") as folder:
        figures_file = Path(folder) / "figures.jsonl"
        basetemp = Path(folder) / "pytest"
        env = dict(os.environ)
        env[FIGURES_ENV] = str(figures_file)
        env.setdefault("HOSTNET_SOAK_SECONDS", "600")
        env.setdefault("HOSTNET_FUZZ_RUNS", "1000000")
        env.setdefault("HOSTNET_RACE_TRIALS", "1000")
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "",  # everything: slow, soak and fuzz_long included
            "-p",
            "no:cacheprovider",
            f"--basetemp={basetemp}",
            "-o",
            "timeout=0",
            *[path for path in SUITE if (ROOT / path.split("::")[0]).exists()],
            *argv,
        ]
        output = Path(folder) / "pytest.out"
        with output.open("wb") as sink:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            for line in proc.stdout:  # shown as it runs, and kept for the secret scan
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
                sink.write(line)
            status = proc.wait()
        leaks = scan_for_secrets(basetemp, (output,))
        figures = read_figures(figures_file)
    print()
    print("hostnet reliability")
    print(table(figures))
    if leaks:
        print("\nSECRETS FOUND IN LOGS:")
        for leak in leaks:
            print(f"  {leak}")
        return status or 1
    print("\nsecret scan: no secret in any log of the run, nor in its output")
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
