"""A TCP relay process for benchmarks that need an engine variant the CLI does not offer.

``python -m tests.bench.relay_process --listen PORT --to PORT --pairs loop|pool`` runs
:class:`proxy.tcp_forwarder.TcpForwarder` on 127.0.0.1 as ``hostnet forward`` does, with
either the event-loop splice (``loop``, the default engine) or the worker-pool splice.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from proxy.addresses import Endpoint
from proxy.event_loop import raise_fd_limit, run
from proxy.tcp_forwarder import PairFactory, TcpForwarder, tcp_connector
from proxy.tcp_splice import SplicePair
from proxy.tcp_splice_pool import PooledSplicePair

PAIRS: dict[str, PairFactory] = {"loop": SplicePair, "pool": PooledSplicePair}


async def serve(listen: int, target: int, pairs: str) -> int:
    forwarder = TcpForwarder(
        Endpoint("127.0.0.1", listen),
        tcp_connector(Endpoint("127.0.0.1", target)),
        pair_factory=PAIRS[pairs],
    )
    await forwarder.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await forwarder.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.relay_process")
    parser.add_argument("--listen", type=int, required=True, metavar="PORT")
    parser.add_argument("--to", type=int, required=True, metavar="PORT", dest="target")
    parser.add_argument("--pairs", choices=sorted(PAIRS), default="loop")
    args = parser.parse_args()
    raise_fd_limit()
    return run(serve(args.listen, args.target, args.pairs))


if __name__ == "__main__":
    sys.exit(main())
