"""``hostnet docker-env``: point a shell's docker CLI at the VM's engine.

In the convention of ``minikube docker-env``: ``eval "$(hostnet docker-env)"`` sets
DOCKER_HOST for this shell; ``--unset`` undoes it. It works under HOSTNET_HOME too.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from app.control_client import ControlClient, ControlError, DaemonUnavailable
from app.engine.docker_config import DEFAULT_DOCKER_CONFIG, DockerConfig
from app.paths import user_paths
from vm.engine.layout import EngineLayout


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "docker-env", help='print DOCKER_HOST for the VM\'s engine: eval "$(hostnet docker-env)"'
    )
    parser.add_argument("--unset", action="store_true", help="print the lines that undo it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.unset:
        print("unset DOCKER_HOST DOCKER_CONFIG")
        return 0
    paths = user_paths()
    try:
        engine = ControlClient(paths.control_socket).get("/v1/status").get("engine")
    except DaemonUnavailable as exc:
        print(
            f"hostnet docker-env: the daemon is not running ({exc}): start it with "
            "`hostnet daemon`",
            file=sys.stderr,
        )
        return 1
    except ControlError as exc:
        print(f"hostnet docker-env: {exc}", file=sys.stderr)
        return 1
    if engine and engine["state"] == "none":
        print(
            f"hostnet docker-env: the attached VM runs no Docker Engine ({engine['detail']})",
            file=sys.stderr,
        )
        return 1
    if not engine or engine["state"] in ("off", "unavailable"):
        detail = engine["detail"] if engine else ""
        print(
            "hostnet docker-env: the engine is not running"
            + (f" ({detail})" if detail else "")
            + ": turn it on with `hostnet settings set ContainerEngineEnabled true`",
            file=sys.stderr,
        )
        return 1
    docker_host = EngineLayout.under(paths.state_dir, paths.runtime_dir).docker_host
    print(f"export DOCKER_HOST={shlex.quote(docker_host)}")
    config = DockerConfig.for_user(paths).folder
    if config != DEFAULT_DOCKER_CONFIG:
        # hostnet's docker config (its context, its credential helper) lives elsewhere.
        print(f"export DOCKER_CONFIG={shlex.quote(str(config))}")
    print()
    print("# To point your shell to hostnet's Docker Engine, run:")
    print('# eval "$(hostnet docker-env)"')
    return 0
