"""``hostnet status`` as a user reads it, from a real daemon: each reason that refuses host
networking is said once, whether it refuses now or would once host networking is on."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.integration.daemon_fixture import RunningDaemon, start_daemon, write_settings
from tests.integration.vm_helpers import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="named network namespaces need root")

KEYS = ("EnhancedContainerIsolation", "UseWindowsContainers")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    settings = {"HostNetworkingEnabled": False, **dict.fromkeys(KEYS, True)}
    running = start_daemon(tmp_path_factory.mktemp("status") / "home", settings)
    yield running
    running.stop()


def status_text(daemon: RunningDaemon) -> str:
    result = daemon.cli("status")
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_each_reason_once(daemon: RunningDaemon, text: str) -> None:
    reasons = daemon.client.get("/v1/status")["reasons"]
    assert [r["setting"] for r in reasons] == list(KEYS)
    for reason in reasons:
        assert text.count(reason["problem"]) == 1, text
        assert text.count(reason["fix"]) == 1, text
    for key in KEYS:
        assert text.count(f"{key} is on") == 1, text


def test_off_names_what_would_refuse_it_once(daemon: RunningDaemon) -> None:
    text = status_text(daemon)
    assert text.splitlines()[0].endswith(": off")
    assert "Turning it on would be refused:" in text
    assert_each_reason_once(daemon, text)


def test_refused_names_each_reason_once(daemon: RunningDaemon) -> None:
    path = daemon.home / "config" / "settings-store.json"
    write_settings(daemon.home, {**json.loads(path.read_text()), "HostNetworkingEnabled": True})
    wait_for(lambda: daemon.client.get("/v1/status")["state"] == "refused", 10, "the refusal")
    text = status_text(daemon)
    assert text.splitlines()[0].endswith(": refused")
    assert "Host networking is refused:" in text
    assert "would be refused" not in text
    assert_each_reason_once(daemon, text)
    lines = text.splitlines()
    assert all(line.startswith("  ") for line in lines[1:]), text  # indented under the title
