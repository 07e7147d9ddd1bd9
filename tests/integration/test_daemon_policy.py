"""The policy gate as the daemon applies it: refused starts, live refusals, locks, live settings."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.control_client import ControlError
from tests.integration.daemon_fixture import (
    HOSTNET,
    RunningDaemon,
    daemon_session,
    start_daemon,
    write_settings,
)
from tests.integration.vm_helpers import (
    free_port,
    host_answer,
    run_client,
    start_server,
    tcp_open,
    wait_for,
)
from tests.signin_peers.fixtures import DOCKER_PASSWORD, DOCKER_USER, Registry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")


def run_daemon_once(
    home: Path, settings: dict[str, object], admin: dict[str, object] | None = None
) -> subprocess.CompletedProcess[str]:
    write_settings(home, settings)
    env = dict(
        os.environ, HOSTNET_HOME=str(home), HOSTNET_ADMIN_SETTINGS=str(home / "admin-settings.json")
    )
    if admin is not None:
        (home / "admin-settings.json").write_text(json.dumps(admin))
    return subprocess.run([HOSTNET, "daemon"], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("key", ["EnhancedContainerIsolation", "UseWindowsContainers"])
def test_refused_start_names_setting_source_and_fix(tmp_path: Path, key: str) -> None:
    result = run_daemon_once(tmp_path, {"HostNetworkingEnabled": True, key: True})
    assert result.returncode == 1
    assert key in result.stderr
    assert "settings-store.json" in result.stderr  # where the value came from
    assert f"hostnet settings set {key} false" in result.stderr  # the fix
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "vm" / "netns.json").exists()  # no VM was started


def test_refused_start_by_admin_lock_says_ask_the_administrator(tmp_path: Path) -> None:
    admin = {
        "configurationFileVersion": 2,
        "EnhancedContainerIsolation": {"locked": True, "value": True},
    }
    result = run_daemon_once(tmp_path, {"HostNetworkingEnabled": True}, admin)
    assert result.returncode == 1
    assert "locked by your administrator" in result.stderr
    assert "admin-settings.json" in result.stderr


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    yield from daemon_session(tmp_path_factory.mktemp("home"), {"HostNetworkingEnabled": True})


def edit_settings(daemon: RunningDaemon, **changes: object) -> None:
    path = daemon.home / "config" / "settings-store.json"
    document = json.loads(path.read_text())
    document.update(changes)
    write_settings(daemon.home, document)


@pytest.mark.parametrize("key", ["EnhancedContainerIsolation", "UseWindowsContainers"])
def test_policy_turning_on_live_tears_mirrors_down_and_back(
    daemon: RunningDaemon, key: str
) -> None:
    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    try:
        wait_for(lambda: tcp_open("127.0.0.1", port), 5, "the mirror")
        edit_settings(daemon, **{key: True})
        wait_for(lambda: daemon.client.get("/v1/status")["state"] == "refused", 5, "refused")
        status = daemon.client.get("/v1/status")
        assert any(r["setting"] == key for r in status["reasons"])
        assert "refused" in status["message"].lower()
        # The status turns at once; the mirrors and the kernel path's rules go within the
        # release goal (removing the rules runs nft on both sides).
        wait_for(lambda: not tcp_open("127.0.0.1", port), 2, "the mirror to go")
        assert daemon.ports() == []
        edit_settings(daemon, **{key: False})
        wait_for(lambda: daemon.client.get("/v1/status")["state"] == "on", 5, "on again")
        wait_for(lambda: tcp_open("127.0.0.1", port), 5, "the mirror back")
    finally:
        server.kill()
        server.wait()
        edit_settings(daemon, **{key: False})


def test_locked_setting_refused_through_the_api(daemon: RunningDaemon) -> None:
    (daemon.home / "admin-settings.json").write_text(
        json.dumps(
            {
                "configurationFileVersion": 2,
                "HostNetworkingExposeAllInterfaces": {"locked": True, "value": False},
            }
        )
    )
    try:
        with pytest.raises(ControlError) as caught:
            daemon.client.call("PUT", "/v1/settings", {"HostNetworkingExposeAllInterfaces": True})
        assert caught.value.status == 403
        assert "locked by your administrator" in str(caught.value)
        user = json.loads((daemon.home / "config" / "settings-store.json").read_text())
        assert user.get("HostNetworkingExposeAllInterfaces") is not True
    finally:
        (daemon.home / "admin-settings.json").unlink()


def test_settings_answers_carry_the_revision_they_are_as_new_as(daemon: RunningDaemon) -> None:
    """GET, PUT and DELETE answer with the daemon's settings revision (each change taken
    counts one), so the app can drop an answer that arrives after a newer event."""
    key = "HostNetworkingUdpIdleTimeoutSeconds"
    first = daemon.client.get("/v1/settings")["revision"]
    answer = daemon.client.call("PUT", "/v1/settings", {key: 7})
    assert answer["settings"]["revision"] == first + 1
    assert answer["settings"]["settings"][key]["value"] == 7
    again = daemon.client.call("PUT", "/v1/settings", {key: 7})  # nothing new to take
    assert again["settings"]["revision"] == first + 1
    assert daemon.client.get("/v1/settings")["revision"] == first + 1
    reset = daemon.client.call("DELETE", f"/v1/settings/{key}")
    assert reset["settings"]["revision"] == first + 2


def test_excluded_ports_apply_live(daemon: RunningDaemon) -> None:
    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
    try:
        wait_for(lambda: tcp_open("127.0.0.1", port), 5, "the mirror")
        daemon.client.call("PUT", "/v1/settings", {"HostNetworkingExcludedPorts": [port]})
        wait_for(
            lambda: daemon.port_state("vm-to-host", "tcp", port, "127.0.0.1") == "excluded",
            5,
            "the excluded state",
        )
        assert not tcp_open("127.0.0.1", port)
        daemon.client.call("PUT", "/v1/settings", {"HostNetworkingExcludedPorts": []})
        wait_for(lambda: tcp_open("127.0.0.1", port), 5, "the mirror back")
    finally:
        server.kill()
        server.wait()


def test_bad_requests_get_clear_errors(daemon: RunningDaemon) -> None:
    for body, status in [({"NoSuchKey": 1}, 404), ({"HostNetworkingExcludedPorts": "x"}, 400)]:
        with pytest.raises(ControlError) as caught:
            daemon.client.call("PUT", "/v1/settings", body)
        assert caught.value.status == status
        assert str(caught.value)
    with pytest.raises(ControlError) as caught:
        daemon.client.call("GET", "/v1/nothing")
    assert caught.value.status == 404


def test_logout_stops_forwarding(
    hostnet_home: Path, real_keyring: object, basic_registry: Registry
) -> None:
    """Signed in through a real registry, forwarding; `hostnet logout` turns it off."""
    env = dict(os.environ)

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HOSTNET, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
        )

    login = cli(
        "login",
        "--registry",
        basic_registry.url,
        "-u",
        DOCKER_USER,
        "--password-stdin",
        stdin=DOCKER_PASSWORD + "\n",
    )
    assert login.returncode == 0, login.stderr
    assert cli("settings", "set", "HostNetworkingEnabled", "true").returncode == 0
    daemon = start_daemon(hostnet_home)
    port = free_port()
    server = None
    try:
        wait_for(
            lambda: daemon.client.get("/v1/status")["agent"]["state"] == "connected",
            10,
            "the agent",
        )
        assert daemon.client.get("/v1/status")["signed_in"] is True
        server = start_server(daemon.vm_prefix, "tcp", "0.0.0.0", port)
        wait_for(lambda: tcp_open("127.0.0.1", port), 5, "the mirror")
        assert cli("logout").returncode == 0
        wait_for(lambda: daemon.client.get("/v1/status")["state"] == "off", 5, "forwarding off")
        wait_for(lambda: not tcp_open("127.0.0.1", port), 2, "the mirror and rules to go")
        assert daemon.client.get("/v1/status")["signed_in"] is False
    finally:
        if server is not None:
            server.kill()
            server.wait()
        daemon.stop()


def udp_flows_open(daemon: RunningDaemon, port: int, direction: str) -> int:
    return sum(
        int(entry["counters"].get("udp_flows_open", 0))
        for entry in daemon.ports()
        if entry["port"] == port and entry["direction"] == direction
    )


def test_udp_idle_timeout_setting_closes_idle_flows(daemon: RunningDaemon) -> None:
    """HostNetworkingUdpIdleTimeoutSeconds applies to the mirrors, live (the proxy path's
    flows: the kernel path's expire on conntrack's timers)."""
    daemon.client.call(
        "PUT",
        "/v1/settings",
        {"HostNetworkingUdpIdleTimeoutSeconds": 0.5, "HostNetworkingDataPath": "proxy"},
    )
    port = free_port("udp")
    server = start_server(daemon.vm_prefix, "udp", "0.0.0.0", port)

    def open_flows() -> int:
        return udp_flows_open(daemon, port, "vm-to-host")

    try:
        wait_for(
            lambda: daemon.port_state("vm-to-host", "udp", port, "127.0.0.1") == "active",
            5,
            "the UDP mirror",
        )
        assert host_answer("udp", "127.0.0.1", port, b"hi") == b"echo:hi"
        assert open_flows() == 1
        wait_for(lambda: open_flows() == 0, 3, "the idle flow to close after 0.5 s")
    finally:
        server.kill()
        server.wait()
        daemon.client.call(
            "PUT",
            "/v1/settings",
            {"HostNetworkingUdpIdleTimeoutSeconds": 60, "HostNetworkingDataPath": "auto"},
        )


def test_udp_idle_timeout_setting_reaches_the_agents_mirrors(daemon: RunningDaemon) -> None:
    """The same setting applies to the agent's mirrors of host ports (VM -> host), live:
    a flow that would stay for 60 s closes once the setting drops to 0.5 s."""
    daemon.client.call("PUT", "/v1/settings", {"HostNetworkingDataPath": "proxy"})
    port = free_port("udp")
    server = start_server([], "udp", "127.0.0.1", port)  # on the host

    def open_flows() -> int:
        return udp_flows_open(daemon, port, "host-to-vm")

    try:
        wait_for(
            lambda: daemon.port_state("host-to-vm", "udp", port, "127.0.0.1") == "active",
            5,
            "the agent's UDP mirror",
        )
        answer = run_client(daemon.vm_prefix, "udp", "127.0.0.1", port, "hi")
        assert answer == "echo:hi"
        wait_for(lambda: open_flows() == 1, 3, "the agent to count the flow")
        time.sleep(1.0)
        assert open_flows() == 1, "a 60 s idle timeout keeps the flow"
        daemon.client.call("PUT", "/v1/settings", {"HostNetworkingUdpIdleTimeoutSeconds": 0.5})
        wait_for(lambda: open_flows() == 0, 4, "the idle flow to close after 0.5 s")
    finally:
        server.kill()
        server.wait()
        daemon.client.call(
            "PUT",
            "/v1/settings",
            {"HostNetworkingUdpIdleTimeoutSeconds": 60, "HostNetworkingDataPath": "auto"},
        )
