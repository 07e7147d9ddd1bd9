"""``hostnet status`` and ``hostnet ports``: what the daemon is doing."""

from __future__ import annotations

import argparse
import json
from typing import Any

from app.control_client import ControlClient, DaemonUnavailable
from app.engine.status_text import engine_lines, owner_text
from app.paths import user_paths


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = subparsers.add_parser("status", help="show whether host networking runs, and why")
    status.add_argument("--json", action="store_true", help="print the daemon's JSON")
    status.set_defaults(func=run_status)
    ports = subparsers.add_parser("ports", help="list forwarded ports with state and counters")
    ports.add_argument("--json", action="store_true", help="print the daemon's JSON")
    ports.set_defaults(func=run_ports)


def _fetch(path: str) -> Any:
    return ControlClient(user_paths().control_socket).get(path)


def run_status(args: argparse.Namespace) -> int:
    try:
        status = _fetch("/v1/status")
    except DaemonUnavailable as exc:
        if args.json:
            print(json.dumps({"state": "stopped", "message": str(exc)}))
        else:
            print(f"hostnet: stopped: {exc}")
        return 3
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"hostnet {status['version']}: {status['state']}")
    for line in status_summary(status):
        print(f"  {line}")
    vm, agent = status["vm"], status["agent"]
    print(f"  VM: {vm['backend']} {vm['state']} {vm['detail']}".rstrip())
    print(f"  agent: {agent['state']} {agent['detail']}".rstrip())
    if "engine" in status:
        print("\n".join(engine_lines(status["engine"])))
    print(f"  signed in: {'yes' if status['signed_in'] else 'no'}")
    print(f"  control API: {user_paths().control_socket}")
    if status["restart_pending"]:
        print("  a changed setting needs a restart: `hostnet daemon --stop` then start it again")
    for problem in status["problems"]:
        print(f"  settings problem: {problem.get('key')}: {problem.get('message')}")
    return 0


def status_summary(status: dict[str, Any]) -> list[str]:
    """The daemon's message, then each reason it does not already spell out.

    A refusal's message lists its reasons itself; while host networking is off, the reasons
    are what would refuse it once turned on, and the message does not name them.
    """
    message: str = status["message"]
    lines = message.splitlines()
    untold = [
        f"{reason['problem']} {reason['fix']}"
        for reason in status["reasons"]
        if f"{reason['problem']} {reason['fix']}" not in message
    ]
    if untold and status["state"] == "off":
        lines.append("Turning it on would be refused:")
    lines.extend(f"- {text}" for text in untold)
    return lines


def run_ports(args: argparse.Namespace) -> int:
    ports = _fetch("/v1/ports")
    if args.json:
        print(json.dumps(ports, indent=2))
        return 0
    if not ports:
        print("no forwarded ports")
        return 0
    header = f"{'DIRECTION':<11} {'PROTO':<5} {'HOST':<22} {'VM':<22} {'STATE':<10} "
    print(header + f"{'OPEN':>5} {'IN':>10} {'OUT':>10}  {'OWNER':<30} REASON")
    for p in ports:
        counters = p.get("counters") or {}
        host = _addr(p["host_address"], p["port"])
        vm = _addr(p["vm_address"], p["port"])
        direction = "vm->host" if p["direction"] == "vm-to-host" else "host->vm"
        print(
            f"{direction:<11} {p['proto']:<5} {host:<22} {vm:<22} {p['state']:<10} "
            f"{counters.get('connections_open', 0):>5} {counters.get('bytes_in', 0):>10} "
            f"{counters.get('bytes_out', 0):>10}  {owner_text(p.get('owner')):<30} {p['reason']}"
        )
    return 0


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
