"""The daemon: settings and the policy gate decide; the VM backend and forwarding follow.

The gate is decided again whenever one of its inputs changes: the settings (a change through
the control API, taken at once, or an edit of the files, seen by the watcher), the sign-in
(told through the control API, seen in the session record, or reaching its expiry), and the
VM's state. Each change is applied once, whichever way it arrives first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import socket
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from app.daemon.events import EventBus
from app.daemon.forwarding import Forwarding
from app.daemon.kernel_carrier import (
    DataPathChoice,
    KernelCarrier,
    add_counters,
    ipv4_mirror_qualifies,
    kernel_path_for,
    wanted_ports,
)
from app.engine.daemon_engine import DaemonEngine
from app.engine.port_owners import PortOwners
from app.paths import Paths
from app.policy.gate import Allow, Decision, Off, Refuse
from app.settings import (
    EffectiveSettings,
    SettingsChange,
    SettingsStore,
    is_excluded,
    port_ranges,
    watch_settings,
)
from app.settings.watch import Signature, file_signature
from app.settings_writer import apply_sign_out, checked_update
from app.signin.session import Session
from app.signin.state import current_session, record_paths
from proxy import __version__
from proxy.errors import HostnetError
from proxy.listeners import Proto
from proxy.mirror_set import MirrorState
from proxy.nat.kernel_path import remove_stale_tables
from proxy.nat.nft import NftError, nft_available
from proxy.nat.ruleset import Direction, PortKey
from proxy.states import ForwardingState, LinkState, VmState
from vm.backends.errors import VMError
from vm.backends.protocol import Backend
from vm.backends.registry import make_backend
from vm.transport.namespace_sockets import NamespaceSockets

log = logging.getLogger(__name__)

AGENT_CHECK_INTERVAL = 0.2
SIGN_IN_CHECK_INTERVAL = 0.5  # how often the session record's identity is compared
COUNTERS_INTERVAL = 1.0


class DaemonError(HostnetError):
    """The daemon cannot start; the message names the cause and the fix."""


class Daemon:
    def __init__(self, paths: Paths, *, admin_file: Path | None = None) -> None:
        self.paths = paths
        self.store = SettingsStore(paths, admin_file=admin_file)
        self.events = EventBus()
        self.effective: EffectiveSettings | None = None
        self.settings_revision = 0  # changes taken; the app keeps the newest it has heard
        self.decision: Decision = Off()
        self.signed_in = False
        self.backend: Backend | None = None
        self._backend_config: tuple[str, dict[str, Any]] = ("", {})
        self._switching_vm = False
        self.forwarding: Forwarding | None = None
        self.kernel: KernelCarrier | None = None
        self.data_path = DataPathChoice("auto", "proxy")
        self.vm_state = VmState.DOWN
        self.vm_detail = ""
        self.link_state = LinkState.DOWN
        self.link_detail = ""
        self.restart_pending = False
        self.started_at = time.time()
        self.stopping = asyncio.Event()
        self._lock_fd: int | None = None
        self._apply_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.engine = DaemonEngine(paths, lambda _: self.events.publish("status", self.status()))
        self.port_owners = PortOwners()
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._session_expiry: asyncio.TimerHandle | None = None
        self._sign_out_note = ""  # what the last sign-out did to the settings
        self._sign_in_read_from: SessionFiles = ()  # the session records self.signed_in is from

    # -- start and stop -------------------------------------------------------------------

    def acquire_lock(self) -> None:
        """One daemon per user: hold an exclusive lock on daemon.lock while running."""
        self.paths.ensure()
        lock_path = self.paths.runtime_dir / "daemon.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = (
                self.paths.daemon_pid_file.read_text().strip()
                if (self.paths.daemon_pid_file.exists())
                else "?"
            )
            raise DaemonError(
                f"a hostnet daemon already runs for this user (pid {other}); "
                "use `hostnet status`, or stop it with `hostnet daemon --stop`"
            ) from None
        self._lock_fd = fd
        self.paths.daemon_pid_file.write_text(f"{os.getpid()}\n")

    def release_lock(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.paths.daemon_pid_file.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def load(self) -> Decision:
        loop = asyncio.get_running_loop()
        self.effective = await loop.run_in_executor(None, self.store.load)
        self._sign_in_read_from, session = await loop.run_in_executor(
            None, read_sign_in, self.paths
        )
        self.signed_in = session is not None
        self._watch_session_expiry(session)
        self.decision = self.effective.gate(signed_in=self.signed_in)
        return self.decision

    async def start(self) -> None:
        """Follow the gate's inputs, bring the VM up, then apply the gate's decision (the
        caller checked it first). What changes while the VM boots is taken at once and
        applied as soon as the VM is up."""
        assert self.effective is not None
        # Starting the VM begins here: the control API already answers, and must not say
        # "down" while the stale tables below are cleared first.
        self._set_vm(VmState.STARTING, "")
        if os.geteuid() == 0 and nft_available():
            # Kernel-path tables of VMs that are gone (a killed daemon's): remove them.
            await asyncio.get_running_loop().run_in_executor(None, remove_stale_tables)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow_settings()),
            loop.create_task(self._follow_sign_in()),
            loop.create_task(self._keep_session_fresh()),
            loop.create_task(self._publish_counters()),
        ]
        await self._start_vm()
        self._tasks.append(loop.create_task(self._supervise_agent()))
        await self._decide()
        await self._apply_engine()

    def _vm_config(self) -> tuple[str, dict[str, Any]]:
        assert self.effective is not None
        name, options = str(self.effective["VmBackend"]), dict(self.effective["VmOptions"] or {})
        folders = list(self.effective["FilesharingDirectories"] or [])
        if name == "qemu" and folders:  # the one backend with a file system of its own
            options["shared_folders"] = folders
        if name == "qemu":  # its engine needs a disk and a port given at boot
            options["engine"] = bool(self.effective["ContainerEngineEnabled"])
        return name, options

    async def _start_vm(self) -> None:
        """Make the backend the settings name and bring its VM up."""
        name, options = self._backend_config = self._vm_config()
        try:
            self.backend = make_backend(name, options, self.paths.vm_dir)
            self._set_vm(VmState.STARTING, "")
            await self.backend.up()
            self._set_vm(VmState.UP, "")
        except (VMError, OSError) as exc:
            self._set_vm(VmState.ERROR, str(exc))
            raise DaemonError(f"cannot start the VM: {exc}") from exc

    async def stop(self) -> None:
        self._watch_session_expiry(None)
        tasks = [*self._tasks, *self._side_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._stop_forwarding()
        await self.engine.stop()
        if self.backend is not None:
            await self.backend.down()
            self._set_vm(VmState.DOWN, "")

    # -- applying the gate ----------------------------------------------------------------

    async def _decide(self) -> None:
        """Decide again from the gate's inputs as they are now, and apply the decision."""
        assert self.effective is not None
        self.decision = self.effective.gate(signed_in=self.signed_in)
        if self._apply_lock.locked():
            # A restart holds the lock while a new VM boots: the decision (and the status)
            # stand now, and it is applied when the restart is done, without holding up the
            # caller (an API answer) for a whole boot.
            self._spawn(self._apply())
        else:
            await self._apply()

    async def _apply(self) -> None:
        async with self._apply_lock:
            decision = self.decision
            if isinstance(decision, Allow):
                if self.forwarding is None and self.vm_state == VmState.UP:
                    await self._start_forwarding()
            else:
                await self._stop_forwarding()
            self.events.publish("status", self.status())

    async def _start_forwarding(self) -> None:
        assert self.backend is not None and self.effective is not None
        address, secret = await self.backend.up()
        vm_sockets = await asyncio.get_running_loop().run_in_executor(None, self._vm_sockets)
        ranges = port_ranges(self.effective["HostNetworkingExcludedPorts"] or [])
        self.forwarding = Forwarding(
            address,
            secret,
            expose_all=bool(self.effective["HostNetworkingExposeAllInterfaces"]),
            excluded=lambda port: is_excluded(port, ranges),
            on_mirror=self._on_mirror,
            on_link_state=self._on_link_state,
            on_vm_mirrors=self._on_vm_mirrors,
            vm_sockets=vm_sockets,
            udp_idle_timeout=float(self.effective["HostNetworkingUdpIdleTimeoutSeconds"]),
        )
        self.forwarding.peer.hold.kernel_first = self._kernel_takes_vm_port
        self.forwarding.kernel_takes = self._kernel_takes_host_port
        await self.forwarding.start()
        await self._start_kernel_path()  # the mirrors carry until the rules are in

    async def _start_kernel_path(self) -> None:
        """NAT rules carry the mirrored IPv4 ports where the VM allows it; else the proxy."""
        assert self.effective is not None
        setting = str(self.effective["HostNetworkingDataPath"])
        path = kernel_path_for(
            setting,
            self.backend,
            expose_all=bool(self.effective["HostNetworkingExposeAllInterfaces"]),
        )
        if isinstance(path, str):
            self.data_path = DataPathChoice(setting, "proxy", "" if setting == "proxy" else path)
            return
        carrier = KernelCarrier(path, self._kernel_ports, watched=lambda: self.events.watched)
        try:
            await carrier.start()
        except NftError as exc:
            await carrier.close()
            self.data_path = DataPathChoice(setting, "proxy", str(exc))
            return
        self.kernel = carrier
        self.data_path = DataPathChoice(setting, "kernel")
        self._kernel_want()

    async def _switch_data_path(self, setting: str) -> None:
        """Rules made or removed only when the path changes: auto and kernel both mean the
        kernel, and remaking its rules would cut the connections it carries."""
        if (setting == "proxy") == (self.kernel is None):
            self.data_path = dataclasses.replace(self.data_path, setting=setting)
            return
        await self._stop_kernel_path()
        await self._start_kernel_path()

    def _kernel_want(self) -> None:
        """Discovery moved a mirror: the kernel carries what the mirrors now carry."""
        if self.kernel is not None:
            self.kernel.mirrors_moved()

    def _kernel_ports(self) -> frozenset[PortKey]:
        if self.forwarding is None or self.effective is None:
            return frozenset()
        ranges = port_ranges(self.effective["HostNetworkingExcludedPorts"] or [])
        return wanted_ports(
            self.forwarding.mirrors.mirrors.values(),
            self.forwarding.vm_mirrors,
            lambda port: is_excluded(port, ranges),
        )

    async def _kernel_takes_vm_port(self, proto: Proto, port: int, hosts: list[str]) -> bool:
        """A held host client's first UDP packet: the rules take the VM port before the
        daemon mirrors it, if its mirror will qualify."""
        return await self._kernel_takes(("to_vm", proto, port), hosts)

    async def _kernel_takes_host_port(self, proto: Proto, port: int, hosts: list[str]) -> bool:
        """A held VM client's first UDP packet: the rules take the host port before the
        agent mirrors it, if its mirror will qualify."""
        return await self._kernel_takes(("to_host", proto, port), hosts)

    async def _kernel_takes(self, key: PortKey, hosts: list[str]) -> bool:
        if self.kernel is None or self.effective is None:
            return False
        ranges = port_ranges(self.effective["HostNetworkingExcludedPorts"] or [])
        if not ipv4_mirror_qualifies(hosts, key[2], lambda port: is_excluded(port, ranges)):
            return False
        return await self.kernel.carry_now(key)

    def _on_vm_mirrors(self, mirrors: list[dict[str, Any]]) -> None:
        self._kernel_want()
        self.events.publish("ports", self.ports())

    def _vm_sockets(self) -> NamespaceSockets | None:
        """Sockets made in the VM's namespace by a thread of ours, where we may enter it."""
        link = self.backend.shared_kernel_link() if self.backend is not None else None
        if link is None:
            return None
        sockets = NamespaceSockets(link.netns_path)
        try:
            sockets.start(
                kinds=((socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_STREAM))
            )
        except OSError as exc:
            log.info("connecting through the agent: %s", exc)
            return None
        return sockets

    async def _stop_kernel_path(self) -> None:
        """Remove the rules; rows say ``kernel`` until they are gone (a connection made
        before then is still the kernel's, and ends with the rules)."""
        if self.kernel is not None:
            await self.kernel.close()
            self.kernel = None
            self.data_path = DataPathChoice(self.data_path.setting, "proxy", "turned off")

    async def _stop_forwarding(self) -> None:
        await self._stop_kernel_path()
        if self.forwarding is not None:
            forwarding, self.forwarding = self.forwarding, None
            await forwarding.stop()
            forwarding.replace_vm_sockets(None)
            self.link_state, self.link_detail = LinkState.DOWN, ""

    async def restart_forwarding(self) -> None:
        """Apply & restart: forwarding starts over, on a new VM if its settings changed."""
        async with self._apply_lock:
            await self._stop_forwarding()
            await self.load()
            if self._vm_config() != self._backend_config:
                self._switching_vm = True  # the supervisor must not revive the old VM
                try:
                    await self.engine.stop()
                    if self.backend is not None:
                        await self.backend.down()
                    await self._start_vm()
                except DaemonError:
                    return  # the VM's state and detail say why; the daemon keeps serving
                finally:
                    self._switching_vm = False
            self.restart_pending = False
        await self._apply()
        await self._apply_engine()

    async def _apply_engine(self) -> None:
        """The engine follows its own setting, not the gate: containers outlive forwarding.
        It needs the VM up: a change taken while the VM boots is applied by start()."""
        assert self.effective is not None
        if self.vm_state != VmState.UP:
            return
        await self.engine.apply(bool(self.effective["ContainerEngineEnabled"]), self.backend)
        await asyncio.get_running_loop().run_in_executor(None, self.engine.use_sign_in, self.paths)

    # -- following changes ----------------------------------------------------------------

    async def change_settings(self, changes: Mapping[str, Any]) -> SettingsChange:
        """A change through the control API: written (sign-in rule first) and taken here
        before the answer; the file watcher then finds nothing new."""
        loop = asyncio.get_running_loop()
        change = await loop.run_in_executor(None, checked_update, self.store, changes)
        await self._take_settings(change.effective)
        return change

    async def reset_setting(self, key: str) -> SettingsChange:
        change = await asyncio.get_running_loop().run_in_executor(None, self.store.reset, key)
        await self._take_settings(change.effective)
        return change

    def settings_json(self) -> dict[str, Any]:
        """The settings in effect and their revision: answers on other connections can
        arrive after a newer event, and the app keeps the newest revision it has heard."""
        assert self.effective is not None
        return {**self.effective.to_json(), "revision": self.settings_revision}

    async def _take_settings(self, effective: EffectiveSettings) -> None:
        """Apply EFFECTIVE where it differs from the settings in effect; nothing when it does
        not (so a change that arrives both ways is applied once)."""
        before = self.effective
        assert before is not None
        changed = effective.changed_keys(before)
        if not changed and effective.problems == before.problems:
            return
        self.effective = effective
        self.settings_revision += 1
        # Said before it is applied: stopping forwarding can take a while, and the status
        # events it sends meanwhile must not be read beside the settings of before.
        self.events.publish("settings", self.settings_json())
        if effective.restart_required_since(before):
            self.restart_pending = True
        if self.forwarding is not None:
            await self._apply_live(changed)
        await self._decide()
        if "ContainerEngineEnabled" in changed:
            if (
                self.effective["ContainerEngineEnabled"]
                and self._vm_config() != self._backend_config
            ):
                self.restart_pending = True  # a QEMU VM gets the engine's disk at its next boot
            await self._apply_engine()

    async def sign_in_changed(self, *, signed_out: bool = False) -> str:
        """Read the sign-in again and decide again. A sign-out (SIGNED_OUT, or a session seen
        to end) gets the sign-in rule's effect on the settings; a note for the person, or ''."""
        loop = asyncio.get_running_loop()
        self._sign_in_read_from, session = await loop.run_in_executor(
            None, read_sign_in, self.paths
        )
        was, self.signed_in = self.signed_in, session is not None
        self._watch_session_expiry(session)
        change, note = None, ""
        if self.signed_in:
            self._sign_out_note = ""
        elif signed_out or was:
            change, note = await loop.run_in_executor(None, apply_sign_out, self.store)
            # The watcher may see the session record go before the person's `hostnet logout`
            # tells us: what the sign-out did is then still theirs to read.
            self._sign_out_note = note = note or self._sign_out_note
        if self.signed_in != was:
            self.events.publish("session", {"signed_in": self.signed_in, "message": note})
        if change is not None:
            await self._take_settings(change.effective)  # decides again, with the sign-in
        elif self.signed_in != was:
            await self._decide()
        if self.signed_in:
            await self._apply_engine()  # the engine's registry credentials follow the sign-in
        return note

    def _watch_session_expiry(self, session: Session | None) -> None:
        """A session ends at its expiry with no file changing: look again at that moment."""
        if self._session_expiry is not None:
            self._session_expiry.cancel()
            self._session_expiry = None
        if session is not None:
            self._session_expiry = asyncio.get_running_loop().call_later(
                max(session.seconds_left(), 0.0) + 0.05,
                lambda: self._spawn(self.sign_in_changed()),
            )

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _follow_settings(self) -> None:
        async for change in watch_settings(
            self.store, initial=self.effective, held=lambda: self.effective
        ):
            effective = change.effective
            if self.effective is not None and unreadable_user_file(effective):
                # A file cut off mid-write (an editor, a full disk) must not turn forwarding
                # off: keep the values in effect and show the problem until it is repaired.
                effective = dataclasses.replace(self.effective, problems=effective.problems)
            await self._take_settings(effective)

    async def _follow_sign_in(self) -> None:
        """A sign-in or sign-out by another program (the app) that did not tell us: the
        session records are compared with the ones the daemon's view was read from (not with
        the last look), so even a sign-in and sign-out within one interval is seen."""
        while True:
            await asyncio.sleep(SIGN_IN_CHECK_INTERVAL)
            now = await asyncio.get_running_loop().run_in_executor(None, session_files, self.paths)
            if now != self._sign_in_read_from:
                await self.sign_in_changed()

    async def _apply_live(self, changed: tuple[str, ...]) -> None:
        assert self.forwarding is not None and self.effective is not None
        if "HostNetworkingExposeAllInterfaces" in changed:
            expose_all = bool(self.effective["HostNetworkingExposeAllInterfaces"])
            if self.kernel is not None:
                with contextlib.suppress(NftError):
                    await self.kernel.path.set_expose_all(expose_all)
            await self.forwarding.set_expose_all(expose_all)
        if "HostNetworkingUdpIdleTimeoutSeconds" in changed:
            self.forwarding.set_udp_idle_timeout(
                float(self.effective["HostNetworkingUdpIdleTimeoutSeconds"])
            )
        if "HostNetworkingDataPath" in changed:
            await self._switch_data_path(str(self.effective["HostNetworkingDataPath"]))
        if "HostNetworkingExcludedPorts" in changed:
            ranges = port_ranges(self.effective["HostNetworkingExcludedPorts"] or [])
            if self.kernel is not None:  # the rules first: no row says excluded while they carry
                await self.kernel.apply_now()
            await self.forwarding.set_excluded(lambda port: is_excluded(port, ranges))

    async def _publish_counters(self) -> None:
        """Counters move without a state change: send the port list when it differs, at most
        once per COUNTERS_INTERVAL, so clients never have to poll."""
        last: list[dict[str, Any]] = []
        while True:
            await asyncio.sleep(COUNTERS_INTERVAL)
            if not self.events.watched:
                last = []  # a new subscriber gets the whole list first anyway
                continue
            ports = self.ports()
            if ports != last:
                last = ports
                self.events.publish("ports", ports)

    async def _keep_session_fresh(self) -> None:
        """Refresh the sign-in before it expires; a refused refresh or an expired session
        signs out, and the gate is decided again (the sign-in rule turns the setting off)."""
        from app.signin.manager import keep_session_fresh

        def changed(session: object, message: str) -> None:
            if message:
                log.warning("sign-in: %s", message)
                payload = {"signed_in": session is not None, "message": message}
                self.events.publish("session", payload)
            self._spawn(self.sign_in_changed())

        await keep_session_fresh(self.paths, self.stopping, on_change=changed)

    async def _supervise_agent(self) -> None:
        """Restart an agent that died (the VM itself stays); the link then reconnects."""
        while True:
            await asyncio.sleep(AGENT_CHECK_INTERVAL)
            if self._switching_vm or self.backend is None or await self.backend.agent_alive():
                continue
            self._set_vm(VmState.RESTARTING, "the agent stopped; starting it again")
            forwarding = self.forwarding
            if forwarding is not None:
                # Leave the namespace first: our thread in it would keep a destroyed VM's
                # namespace (and its veth) alive, and the new one could not be made.
                forwarding.replace_vm_sockets(None)
            try:
                await self.backend.restart_agent()
                if forwarding is not None and forwarding is self.forwarding:
                    forwarding.replace_vm_sockets(
                        await asyncio.get_running_loop().run_in_executor(None, self._vm_sockets)
                    )
                if self.kernel is not None:  # the namespace may be new: its table too
                    await self.kernel.restart()
                elif forwarding is not None and forwarding is self.forwarding:
                    await self._start_kernel_path()  # it may have failed with the old VM
                self._set_vm(VmState.UP, "")
            except (VMError, OSError) as exc:
                self._set_vm(VmState.ERROR, str(exc))
                await asyncio.sleep(1.0)

    # -- state for the control API --------------------------------------------------------

    def _set_vm(self, state: VmState, detail: str) -> None:
        self.vm_state, self.vm_detail = state, detail
        self.events.publish("status", self.status())

    def _on_link_state(self, state: LinkState, detail: str) -> None:
        self.link_state, self.link_detail = state, detail
        self.events.publish("status", self.status())

    def _on_mirror(self, mirror: MirrorState) -> None:
        self._kernel_want()
        self.events.publish("port", self._with_path(port_entry(mirror)))

    def state_name(self) -> ForwardingState:
        decision = self.decision
        if isinstance(decision, Refuse):
            return ForwardingState.REFUSED
        if isinstance(decision, Off):
            return ForwardingState.OFF
        if self.vm_state == VmState.ERROR or self.link_state == LinkState.REFUSED:
            return ForwardingState.ERROR
        return ForwardingState.ON

    def message(self) -> str:
        """The decision's message, saying so when it waits for the VM (never "turn it on"
        about a setting that is on)."""
        decision = self.decision
        waiting = (VmState.DOWN, VmState.STARTING, VmState.RESTARTING)
        if isinstance(decision, Allow) and self.vm_state in waiting:
            return "Host networking is on; the VM is starting, and forwarding begins when it is up."
        if isinstance(decision, Allow) and self.vm_state == VmState.ERROR:
            return f"Host networking is on, but the VM is not running: {self.vm_detail}"
        return decision.message

    def status(self) -> dict[str, Any]:
        decision = self.decision
        reasons = []
        if isinstance(decision, Refuse | Off):
            source = decision.reasons if isinstance(decision, Refuse) else decision.blockers
            reasons = [
                {
                    "setting": r.setting,
                    "source": r.source,
                    "location": r.location,
                    "problem": r.problem,
                    "fix": r.fix,
                }
                for r in source
            ]
        effective = self.effective
        return {
            "version": __version__,
            "pid": os.getpid(),
            "state": self.state_name(),
            "message": self.message(),
            "reasons": reasons,
            "signed_in": self.signed_in,
            "restart_pending": self.restart_pending,
            "vm": {
                "backend": self.backend.name if self.backend else None,
                "state": self.vm_state,
                "detail": self.vm_detail,
            },
            "agent": {"state": self.link_state, "detail": self.link_detail},
            "engine": self.engine.to_json(),
            "hold": self.forwarding.hold_status() if self.forwarding else None,
            "data_path": self.data_path.as_dict()
            | ({"error": self.kernel.error} if self.kernel and self.kernel.error else {}),
            "problems": [p.to_json() for p in effective.problems] if effective else [],
        }

    async def fresh_ports(self) -> list[dict[str, Any]]:
        """The port rows, with the kernel's counters read now if they are not recent."""
        if self.kernel is not None:
            await self.kernel.refresh_if_stale()
        return self.ports()

    def ports(self) -> list[dict[str, Any]]:
        if self.forwarding is None:
            return []
        entries = [port_entry(m) for m in self.forwarding.mirrors.states()]
        for item in self.forwarding.vm_mirrors:
            entries.append(
                {
                    "direction": "host-to-vm",
                    "proto": item["proto"],
                    "port": item["port"],
                    "host_address": item["remote_host"],
                    "vm_address": item["bind"],
                    "state": item["state"],
                    "reason": item["reason"],
                    "counters": item["counters"],
                }
            )
        entries = [self._with_path(entry) for entry in entries]
        return self.port_owners.annotate(
            entries, self.backend, self.engine.docker_host(), self.forwarding.link.request
        )

    def _with_path(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A port row with ``path`` (kernel or proxy) and, if the kernel carries it, the
        kernel's counters added to the proxy's."""
        kernel = self.kernel
        vm_to_host = entry["direction"] == "vm-to-host"
        address = entry["host_address"] if vm_to_host else entry["vm_address"]
        direction: Direction = "to_vm" if vm_to_host else "to_host"
        path = "proxy"
        if kernel is not None:
            path = kernel.path_of(direction, entry["proto"], entry["port"], address)
            counters = kernel.counters(direction, entry["proto"], entry["port"])
            if path == "kernel" and counters is not None:
                entry = {**entry, "counters": dict(entry["counters"])}
                add_counters(entry, counters)
        return {**entry, "path": path}


SessionFiles = tuple[Signature, ...]


def session_files(paths: Paths) -> SessionFiles:
    """The identity of each session record (None where there is none)."""
    return tuple(file_signature(path) for path in record_paths(paths))


def read_sign_in(paths: Paths) -> tuple[SessionFiles, Session | None]:
    """The session records' identity, then the session read from them."""
    return session_files(paths), current_session(paths)


def unreadable_user_file(effective: EffectiveSettings) -> bool:
    """True when the user's settings file could not be read as a whole (a problem about the
    file, not a key), so the values read are only the defaults."""
    return any(p.key is None and p.file == effective.user_file for p in effective.problems)


def port_entry(mirror: MirrorState) -> dict[str, Any]:
    data = mirror.as_dict()
    return {
        "direction": "vm-to-host",
        "proto": data["proto"],
        "port": data["port"],
        "host_address": data["bind"],
        "vm_address": data["remote_host"],
        "state": data["state"],
        "reason": data["reason"],
        "counters": data["counters"],
    }
