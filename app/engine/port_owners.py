"""Who listens on each forwarded port: the process (name, pid) and, for a container, its
name and image, read from the engine's API with the docker SDK.

Reading /proc and asking the engine take milliseconds, so the daemon never does it on its
event loop: ``annotate`` answers from the last result and starts a refresh in a worker
thread when the set of ports changed or the result is older than REFRESH_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from proxy.errors import HostnetError
from proxy.wire import Response
from vm.backends.netns_backend import NetnsBackend
from vm.backends.protocol import Backend
from vm.engine.listener_owners import (
    PORT_OWNERS,
    PortKey,
    ProcessOwner,
    owners_from_json,
    port_owners,
)

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
DOCKER_TIMEOUT = 5

Key = tuple[str, str, int]  # (direction, proto, port)
Container = tuple[str, str]  # (name, image)
AskAgent = Callable[[str], Awaitable[Response]]
"""The agent link's ``request``: the VM's owners where the daemon cannot see its /proc."""


def vm_netns_pid(backend: Backend | None) -> int | None:
    """A process inside the VM's network namespace, where the daemon can see it (the agent
    of the root namespace VM); None elsewhere."""
    if not isinstance(backend, NetnsBackend) or backend.shared_kernel_link() is None:
        return None
    state = backend.vm.read_state()
    if state is None or state.rootless:
        return None
    return int(state.agent_pid)


def owner_json(
    owner: ProcessOwner, containers: dict[str, Container], by_ip: dict[str, Container]
) -> dict[str, Any]:
    container: Container | None = containers.get(owner.container_id) if owner.container_id else None
    if container is None and owner.proxy_for is not None:
        container = by_ip.get(owner.proxy_for[0])
    return {
        "pid": owner.pid,
        "process": owner.name,
        "container": container[0] if container else None,
        "image": container[1] if container else None,
    }


def engine_containers(docker_host: str) -> tuple[dict[str, Container], dict[str, Container]]:
    """Running containers by id and by network address."""
    # Imported here, in the worker thread that first asks an engine: the SDK and requests
    # take 0.2 s to import, which every daemon start paid, engine or not.
    import docker
    import docker.errors
    import requests.exceptions

    by_id: dict[str, Container] = {}
    by_ip: dict[str, Container] = {}
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=DOCKER_TIMEOUT)
    except docker.errors.DockerException as exc:
        log.debug("port owners: no engine: %s", exc)
        return by_id, by_ip
    try:
        # A container that goes (``--rm``) between the list and its inspect is skipped, not
        # allowed to cost every other container's owner.
        for container in client.containers.list(ignore_removed=True):
            attrs = container.attrs
            entry = (container.name or "", str(attrs.get("Config", {}).get("Image", "")))
            by_id[container.id or ""] = entry
            networks = attrs.get("NetworkSettings", {}).get("Networks") or {}
            for network in networks.values():
                if network.get("IPAddress"):
                    by_ip[network["IPAddress"]] = entry
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        log.debug("port owners: engine did not answer: %s", exc)
    finally:
        client.close()
    return by_id, by_ip


async def vm_port_owners(ask: AskAgent) -> dict[PortKey, ProcessOwner] | None:
    """The owners of the VM's listeners as its agent reads them, or None if it cannot."""
    try:
        response = await ask(PORT_OWNERS)
    except (HostnetError, OSError, TimeoutError) as exc:
        log.debug("port owners: the agent did not say: %s", exc)
        return None
    return owners_from_json(response.result) if response.ok else None


def find_owners(
    keys: Iterable[Key],
    vm_pid: int | None,
    docker_host: str | None,
    vm_owners: dict[PortKey, ProcessOwner] | None = None,
) -> dict[Key, dict[str, Any]]:
    """Owners of ``keys``: VM ports from the VM's namespace (or, where the daemon cannot
    see it, ``vm_owners`` from the agent), host ports from the daemon's; hostnet's own
    mirrors (the agent's and the daemon's sockets) are left out."""
    keys = set(keys)
    sides: dict[str, dict[tuple[str, int], ProcessOwner]] = {
        "host-to-vm": port_owners("self", ignore_pids={os.getpid()})
    }
    if vm_pid is not None:
        sides["vm-to-host"] = port_owners(vm_pid, ignore_pids={vm_pid})
    elif vm_owners is not None:
        sides["vm-to-host"] = vm_owners
    found = {
        key: owner
        for key in keys
        if (owner := sides.get(key[0], {}).get((key[1], key[2]))) is not None
    }
    containers: dict[str, Container] = {}
    by_ip: dict[str, Container] = {}
    if docker_host and any(o.container_id or o.proxy_for for o in found.values()):
        containers, by_ip = engine_containers(docker_host)
    return {key: owner_json(owner, containers, by_ip) for key, owner in found.items()}


class PortOwners:
    def __init__(self) -> None:
        self._owners: dict[Key, dict[str, Any]] = {}
        self._keys: frozenset[Key] = frozenset()
        self._refreshed = 0.0
        self._task: asyncio.Future[dict[Key, dict[str, Any]]] | None = None

    def annotate(
        self,
        entries: list[dict[str, Any]],
        backend: Backend | None,
        docker_host: str | None,
        ask_agent: AskAgent | None = None,
    ) -> list[dict[str, Any]]:
        """Add ``owner`` (or None) to each port entry; refresh in the background if due.
        ``ask_agent`` reaches the VM's agent, for VMs whose /proc the daemon cannot read."""
        keys = frozenset((e["direction"], e["proto"], e["port"]) for e in entries)
        stale = time.monotonic() - self._refreshed > REFRESH_SECONDS
        if (keys != self._keys or stale) and self._task is None and keys:
            self._start_refresh(keys, vm_netns_pid(backend), docker_host, ask_agent)
        for entry in entries:
            entry["owner"] = self._owners.get((entry["direction"], entry["proto"], entry["port"]))
        return entries

    def _start_refresh(
        self,
        keys: frozenset[Key],
        vm_pid: int | None,
        docker_host: str | None,
        ask_agent: AskAgent | None,
    ) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop: a caller outside the daemon
            loop = asyncio.get_running_loop()
            self._keys = keys
            self._task = loop.create_task(self._refresh(keys, vm_pid, docker_host, ask_agent))
            self._task.add_done_callback(self._refresh_done)

    async def _refresh(
        self,
        keys: frozenset[Key],
        vm_pid: int | None,
        docker_host: str | None,
        ask_agent: AskAgent | None,
    ) -> dict[Key, dict[str, Any]]:
        vm_owners = None
        if vm_pid is None and ask_agent is not None:
            vm_owners = await vm_port_owners(ask_agent)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, find_owners, keys, vm_pid, docker_host, vm_owners)

    def _refresh_done(self, task: asyncio.Future[dict[Key, dict[str, Any]]]) -> None:
        self._task = None
        self._refreshed = time.monotonic()
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.warning("cannot find the owners of forwarded ports: %s", error)
            return
        self._owners = task.result()
