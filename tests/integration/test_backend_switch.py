"""Apply & restart after VmBackend changed: the old VM goes, the new one forwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.wire.secret import load_or_create_secret
from tests.integration.daemon_fixture import start_daemon
from tests.integration.vm_helpers import bare_namespace, free_port, start_server, tcp_open, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")


def test_restart_moves_forwarding_to_the_new_backend(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "home", {"HostNetworkingEnabled": True})
    old_namespace = daemon.netns["name"]
    with bare_namespace(tmp_path / "other-vm") as other:
        secret = tmp_path / "other.secret"
        load_or_create_secret(secret)
        sock = tmp_path / "other-agent.sock"
        ready = tmp_path / "other.ready"
        agent = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                other.name,
                sys.executable,
                "-m",
                "vm.agent",
                "--listen",
                f"unix:{sock}",
                "--secret-file",
                str(secret),
                "--ready-file",
                str(ready),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = None
        try:
            wait_for(ready.exists, 10, "the other VM's agent")
            daemon.client.call(
                "PUT",
                "/v1/settings",
                {
                    "VmBackend": "attach",
                    "VmOptions": {"transport": f"unix:{sock}", "secret_file": str(secret)},
                },
            )
            wait_for(
                lambda: daemon.client.get("/v1/status")["restart_pending"],
                5,
                "the daemon to say a restart is needed",
            )
            daemon.client.call("POST", "/v1/restart")
            status = daemon.client.get("/v1/status")
            assert status["vm"]["backend"] == "attach" and not status["restart_pending"]
            assert not Path("/run/netns", old_namespace).exists(), "the old VM is gone"
            port = free_port()
            server = start_server(["ip", "netns", "exec", other.name], "tcp", "0.0.0.0", port)
            wait_for(lambda: tcp_open("127.0.0.1", port), 10, "a mirror from the new VM")
        finally:
            if server is not None:
                server.kill()
                server.wait()
            daemon.stop()
            agent.kill()
            agent.wait()
