"""``hostnet vm up|down|exec``: the VM on its own, without (or beside) the daemon."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from app.commands.vm_install_agent import register_install_agent
from app.paths import user_paths
from app.settings import SettingsStore
from vm.backends.errors import VMError
from vm.backends.netns import NetnsVM
from vm.backends.registry import DEFAULT_BACKEND, backend_names, make_backend
from vm.transport.wire_socket import connect_wire


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("vm", help="start, stop or run a command in the VM")
    actions = parser.add_subparsers(dest="vm_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start the VM and its agent")
    up.add_argument("--backend", choices=backend_names(), default=DEFAULT_BACKEND)
    up.set_defaults(func=run_up)
    down = actions.add_parser("down", help="stop the VM (and the daemon using it)")
    down.set_defaults(func=run_down)
    exec_ = actions.add_parser("exec", help="run a command inside the VM: vm exec -- CMD ...")
    exec_.add_argument(
        "--detach",
        action="store_true",
        help="start the command in the background and print its pid (qemu and attach VMs)",
    )
    exec_.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD")
    exec_.set_defaults(func=run_exec)
    register_install_agent(actions)


def _netns() -> NetnsVM:
    paths = user_paths()
    paths.ensure()
    return NetnsVM(paths.vm_dir)


def run_up(args: argparse.Namespace) -> int:
    if args.backend == "qemu":
        from app.commands.vm_qemu import run_qemu_up

        return int(run_qemu_up(args))
    if args.backend == "attach":
        return _attach_up()
    state = _netns().up()
    where = "rootless user namespace" if state.rootless else f"namespace {state.name}"
    print(f"VM up: {where}, agent pid {state.agent_pid}")
    if state.vm_ip:
        print(f"  VM address {state.vm_ip} and {state.vm_ip6}; host side {state.host_ip}")
    return 0


def _attach_up() -> int:
    """An existing VM is already up: check that its agent answers with the configured options."""
    paths = user_paths()
    options = SettingsStore(paths).load()["VmOptions"]
    backend = make_backend("attach", options, paths.vm_dir)

    async def handshake() -> str:
        address, secret = await backend.up()
        wire = await connect_wire(await address.connect(), "daemon", "control", secret)
        wire.close()
        return str(address)

    try:
        where = asyncio.run(handshake())
    except (OSError, TimeoutError) as exc:
        raise VMError(
            f"the attached VM's agent does not answer: {exc}",
            "check VmOptions transport and that the agent runs (hostnet vm install-agent)",
        ) from None
    print(f"VM attached: its agent answers at {where}")
    print("  use it with `hostnet settings set VmBackend attach`")
    return 0


def run_down(args: argparse.Namespace) -> int:
    from app.commands.vm_qemu import stop_qemu

    stop_qemu(user_paths())  # the daemon stops (a QEMU VM powers off with it)
    _netns().down()
    print("VM down")
    return 0


def run_exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("hostnet vm exec: name a command: hostnet vm exec -- CMD [ARGS...]", file=sys.stderr)
        return 2
    from app.commands.vm_qemu import daemon_status, exec_through_agent

    paths = user_paths()
    status = daemon_status(paths)
    if status is not None and status["vm"]["backend"] in ("qemu", "attach"):
        return exec_through_agent(paths, command, args.detach)
    if args.detach:
        print("hostnet vm exec: --detach needs a qemu or attach VM", file=sys.stderr)
        return 2
    argv = _netns().exec_command(command)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"hostnet vm exec: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached
