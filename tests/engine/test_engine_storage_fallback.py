"""overlay2 refused: on a home folder that is itself an overlayfs (as inside many containers),
dockerd cannot stack overlay2 on it; the engine then runs on vfs and says so."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.engine.engine_fixture import (
    ENGINE_SETTINGS,
    needs_engine,
    short_home,
    wait_engine_running,
)
from tests.engine.images import build_test_image
from tests.integration.daemon_fixture import start_daemon
from vm.engine.mounts import release_mounts

pytestmark = needs_engine


@pytest.fixture
def overlay_home() -> Iterator[Path]:
    base = short_home()
    layers = {name: base / name for name in ("lower", "upper", "work", "home")}
    for folder in layers.values():
        folder.mkdir()
    options = "lowerdir={lower},upperdir={upper},workdir={work}".format(**layers)
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(layers["home"])], check=True
    )
    try:
        yield layers["home"]
    finally:
        release_mounts(base)
        shutil.rmtree(base, ignore_errors=True)


def test_overlay2_refused_falls_back_to_vfs_and_says_so(overlay_home: Path) -> None:
    daemon = start_daemon(overlay_home, ENGINE_SETTINGS)
    try:
        wait_engine_running(daemon)
        engine = daemon.client.get("/v1/status")["engine"]
        assert engine["storage_driver"] == "vfs"
        assert engine["detail"] == "overlay2 was refused on this filesystem; using vfs"
        assert "engine: running (vfs) overlay2 was refused" in daemon.cli("status").stdout
        client = docker.DockerClient(base_url=engine["docker_host"], timeout=60)
        image = build_test_image(client)
        assert client.containers.run(image, ["echo", "on vfs"], remove=True) == b"on vfs\n"
        assert client.info()["Driver"] == "vfs"
        client.close()
    finally:
        daemon.stop()
