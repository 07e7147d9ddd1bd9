"""``hostnet daemon``: run the daemon in the foreground until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from app.control_client import ControlClient
from app.daemon.control_api import serve
from app.daemon.service import Daemon
from app.paths import admin_settings_path, user_paths
from app.policy.gate import Refuse
from proxy.event_loop import raise_fd_limit, run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "daemon",
        help="run the hostnet daemon (forwarding) in the foreground",
        description="Run the daemon: starts the VM, mirrors its ports on the host and the "
        "host's in the VM, and serves the control API. Stops on SIGINT or SIGTERM.",
    )
    parser.add_argument("--stop", action="store_true", help="ask the running daemon to stop")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.set_defaults(func=run_daemon)


def run_daemon(args: argparse.Namespace) -> int:
    paths = user_paths()
    if args.stop:
        ControlClient(paths.control_socket).call("POST", "/v1/shutdown")
        return 0
    paths.ensure()
    paths.daemon_log.touch(mode=0o600)
    paths.daemon_log.chmod(0o600)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s daemon %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(paths.daemon_log), logging.StreamHandler()],
    )
    raise_fd_limit()
    daemon = Daemon(paths, admin_file=admin_settings_path())
    daemon.acquire_lock()
    try:
        return run(_main(daemon))
    finally:
        daemon.release_lock()


def dump_tasks() -> None:
    """SIGUSR1: write every asyncio task and where it waits to the log, to see a stall."""
    log = logging.getLogger("hostnet.tasks")
    for task in asyncio.all_tasks():
        lines = [repr(task)]
        awaitable: Any = task.get_coro()
        while awaitable is not None:
            frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
            if frame is not None:
                lines.append(
                    f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
                )
            awaitable = getattr(awaitable, "cr_await", None) or getattr(
                awaitable, "gi_yieldfrom", None
            )
        log.warning("\n".join(lines))


async def _main(daemon: Daemon) -> int:
    decision = await daemon.load()
    assert daemon.effective is not None
    for problem in daemon.effective.problems:
        print(f"hostnet daemon: settings problem: {problem}", file=sys.stderr)
    if isinstance(decision, Refuse):
        print(f"hostnet daemon: {decision.message}", file=sys.stderr)
        return 1
    runner = await serve(daemon, daemon.paths.control_socket)
    loop = asyncio.get_running_loop()

    def stop_on(sig: signal.Signals) -> None:
        logging.getLogger(__name__).info("%s received: stopping", sig.name)
        daemon.stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_on, sig)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    try:
        await daemon.start()
        print(
            f"hostnet daemon: {daemon.message()} Control API on {daemon.paths.control_socket}",
            flush=True,
        )
        await daemon.stopping.wait()
    finally:
        await daemon.stop()
        await runner.cleanup()
    return 0
