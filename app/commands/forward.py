"""``hostnet forward``: the relay engine on its own, like socat."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from proxy.addresses import parse_endpoint
from proxy.event_loop import raise_fd_limit, run
from proxy.forwarder import Forward, ForwardSpec


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "forward",
        help="relay one listen address to a target (TCP, or UDP with --udp)",
        description="Relay connections (or datagrams) from a listen address to a target.",
    )
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--to", required=True, metavar="HOST:PORT", dest="target")
    parser.add_argument("--udp", action="store_true", help="relay UDP instead of TCP")
    parser.add_argument(
        "--udp-idle-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="close a UDP flow after this long without traffic (default 60)",
    )
    parser.add_argument(
        "--udp-max-flows",
        type=int,
        default=4096,
        metavar="N",
        help="at most N UDP flows; the longest idle is evicted (default 4096)",
    )
    parser.set_defaults(func=run_forward)


def run_forward(args: argparse.Namespace) -> int:
    listen = parse_endpoint(args.listen)
    target = parse_endpoint(args.target)
    if args.udp_idle_timeout <= 0 or args.udp_max_flows < 1:
        print(
            "hostnet forward: --udp-idle-timeout and --udp-max-flows must be positive",
            file=sys.stderr,
        )
        return 2
    spec = ForwardSpec(
        "udp" if args.udp else "tcp",
        listen,
        target,
        udp_idle_timeout=args.udp_idle_timeout,
        udp_max_flows=args.udp_max_flows,
    )
    raise_fd_limit()
    return run(_serve(spec))


async def _serve(spec: ForwardSpec) -> int:
    forward = Forward(spec)
    await forward.start()
    print(f"hostnet forward: {spec.proto} {forward.bound} -> {spec.target}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await forward.stop()
    return 0
