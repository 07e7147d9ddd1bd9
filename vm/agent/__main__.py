"""``python -m vm.agent`` (and ``hostnet agent``): run the guest agent until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from proxy.addresses import AddressError
from proxy.event_loop import raise_fd_limit, run
from proxy.wire import SecretFileError, load_secret
from vm.agent.engine_socket import ENGINE_SOCKETS
from vm.agent.server import Agent
from vm.transport.address import parse_transport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        required=True,
        metavar="ADDRESS",
        help="where the daemon reaches the agent: unix:PATH, tcp:HOST:PORT or vsock:CID:PORT",
    )
    parser.add_argument(
        "--secret-file",
        required=True,
        metavar="PATH",
        help="the per-VM secret shared with the daemon (mode 0600)",
    )
    parser.add_argument("--ready-file", metavar="PATH", help="written once the agent listens")
    parser.add_argument(
        "--engine-socket",
        action="append",
        type=Path,
        metavar="PATH",
        help="the VM's Docker Engine API socket the daemon may reach, tried in order "
        "(repeatable; default: /var/run/docker.sock, then /run/docker.sock)",
    )
    parser.add_argument(
        "--loopback-up",
        action="store_true",
        help="bring the loopback interface up first (a fresh unshared network namespace)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")


def bring_loopback_up() -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def run_agent(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s agent %(levelname)s %(name)s: %(message)s",
    )
    try:
        address = parse_transport(args.listen)
        secret = load_secret(args.secret_file)
    except (AddressError, SecretFileError) as exc:
        print(f"hostnet agent: {exc}", file=sys.stderr)
        return 2
    raise_fd_limit()
    try:
        if args.loopback_up:
            bring_loopback_up()
        agent = Agent(address, secret, args.engine_socket or ENGINE_SOCKETS)
        return run(_serve(address_agent=agent, ready_file=args.ready_file))
    except OSError as exc:
        print(f"hostnet agent: {exc}", file=sys.stderr)
        return 1


async def _serve(address_agent: Agent, ready_file: str | None) -> int:
    await address_agent.start()
    if ready_file:
        with open(ready_file, "w") as f:
            f.write("ready\n")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await address_agent.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hostnet agent", description="The hostnet guest agent.")
    add_arguments(parser)
    return run_agent(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
