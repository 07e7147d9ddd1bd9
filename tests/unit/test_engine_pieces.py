"""The engine's small pieces on their own: DNS messages, the dockerd command line and its
storage fallback, the docker config it writes, registry names, listener owners from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from pathlib import Path

import pytest

from app.engine.docker_config import DockerConfig, DockerConfigError
from app.engine.registry_names import DOCKER_HUB_CLI_NAME, cli_name, registry_key
from vm.engine.dns_message import (
    RCODE_SERVFAIL,
    TYPE_A,
    TYPE_AAAA,
    DnsFormatError,
    answer,
    parse_query,
)
from vm.engine.dockerd_command import DockerdOptions, dockerd_command, storage_driver_refused
from vm.engine.layout import EngineLayout, EngineLayoutError
from vm.engine.listener_owners import port_owners
from vm.engine.mounts import mounts_under
from vm.engine.vm_own_engine import VmOwnEngineTarget


def query(name: str, qtype: int = TYPE_A, ident: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def test_dns_answers_an_a_record_that_a_resolver_reads() -> None:
    question = parse_query(query("Host.Docker.Internal"))
    assert question.name == "host.docker.internal"
    reply = answer(question, "198.18.0.2")
    ident, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", reply)
    assert (ident, flags & 0x8000, flags & 0x0100, flags & 0xF, qd, an) == (
        0x1234,
        0x8000,
        0x100,
        0,
        1,
        1,
    )
    assert reply.endswith(socket.inet_aton("198.18.0.2"))
    pointer, rtype, rclass, _ttl, length = struct.unpack_from("!HHHIH", reply, len(reply) - 16)
    assert (pointer, rtype, rclass, length) == (0xC00C, TYPE_A, 1, 4)


def test_dns_answers_no_record_or_an_error() -> None:
    aaaa = answer(parse_query(query("host.docker.internal", TYPE_AAAA)), None)
    assert struct.unpack_from("!HHHHHH", aaaa)[3] == 0
    failed = answer(parse_query(query("example.org")), None, rcode=RCODE_SERVFAIL)
    assert struct.unpack_from("!H", failed, 2)[0] & 0xF == RCODE_SERVFAIL


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0" * 11,
        query("a.b")[:-3],
        query("a.b")[:12] + b"\xc0\x0c\0\1\0\1",
        b"\0\0\x80" + b"\0" * 9,
    ],
)
def test_dns_refuses_what_it_cannot_read(data: bytes) -> None:
    with pytest.raises(DnsFormatError):
        parse_query(data)


def test_dockerd_command_enters_the_namespace_with_setns_and_keeps_files_in_the_layout(
    tmp_path: Path,
) -> None:
    layout = EngineLayout.under(tmp_path / "state", tmp_path / "run")
    command = dockerd_command(
        layout, "/run/netns/vm", DockerdOptions("overlay2", "198.18.0.2", "198.18.0.2")
    )
    assert command[:4] == ["nsenter", "--net=/run/netns/vm", "--", "dockerd"]
    assert "ip" not in command
    pairs = dict(zip(command[4::2], command[5::2], strict=False))
    assert pairs["--data-root"].startswith(str(tmp_path / "state"))
    assert pairs["--host"] == f"unix://{tmp_path}/run/docker.sock"
    assert pairs["--host-gateway-ip"] == "198.18.0.2"
    assert pairs["--storage-driver"] == "overlay2"
    ulimits = [command[i + 1] for i, arg in enumerate(command) if arg == "--default-ulimit"]
    assert ulimits == ["nofile=1024:1024", "nproc=1024:1024"]


def test_storage_fallback_only_for_a_refused_driver() -> None:
    refused = (
        'level=error msg="failed to mount overlay: invalid argument" storage-driver=overlay2\n'
        "failed to start daemon: error initializing graphdriver: driver not supported"
    )
    assert storage_driver_refused(refused, "overlay2")
    assert not storage_driver_refused("failed to start daemon: pid file found", "overlay2")


def test_layout_refuses_a_home_too_deep_for_dockerds_sockets(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)
    with pytest.raises(EngineLayoutError) as caught:
        EngineLayout.under(deep / "state", deep / "run").check()
    assert caught.value.fix == "set HOSTNET_HOME to a shorter folder"


def test_docker_config_context_and_helper_keep_what_was_there(tmp_path: Path) -> None:
    config = DockerConfig(tmp_path / "docker")
    config.folder.mkdir()
    config.config_file.write_text(json.dumps({"auths": {"x": {}}, "credHelpers": {"y": "pass"}}))
    config.write_context("unix:///run/hn/docker.sock")
    assert config.context_host() == "unix:///run/hn/docker.sock"
    config.write_context("unix:///elsewhere/docker.sock")
    assert config.context_host() == "unix:///elsewhere/docker.sock"
    config.use_credential_helper("127.0.0.1:5000")
    data = json.loads(config.config_file.read_text())
    assert data == {"auths": {"x": {}}, "credHelpers": {"y": "pass", "127.0.0.1:5000": "hostnet"}}
    config.config_file.write_text("{not json")
    with pytest.raises(DockerConfigError, match="not valid JSON"):
        config.use_credential_helper("127.0.0.1:5000")
    assert config.config_file.read_text() == "{not json"


def test_registry_names_as_the_docker_cli_spells_them() -> None:
    assert cli_name("https://registry-1.docker.io") == DOCKER_HUB_CLI_NAME
    assert registry_key(DOCKER_HUB_CLI_NAME) == registry_key("docker.io") == "docker.io"
    assert cli_name("http://127.0.0.1:5000") == "127.0.0.1:5000"
    assert registry_key("127.0.0.1:5000") == registry_key("https://127.0.0.1:5000/v2/")


def test_listener_owners_name_this_process_and_leave_out_ignored_ones() -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("::1", 0))
        tcp_port, udp_port = tcp.getsockname()[1], udp.getsockname()[1]
        owners = port_owners(os.getpid())
        assert owners[("tcp", tcp_port)].pid == os.getpid()
        assert owners[("udp", udp_port)].name == Path("/proc/self/comm").read_text().strip()
        assert ("tcp", tcp_port) not in port_owners(os.getpid(), ignore_pids={os.getpid()})


def test_mounts_under_reads_mountinfo_deepest_first(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "1 0 0:1 / /srv/e rw - ext4 a rw\n"
        "2 1 0:2 / /srv/e/exec/netns/default rw - nsfs nsfs rw\n"
        "3 1 0:3 / /srv/e\\040x rw - ext4 b rw\n"
        "4 1 0:4 / /srv/other rw - ext4 c rw\n"
    )
    assert mounts_under(Path("/srv/e"), info) == ["/srv/e/exec/netns/default", "/srv/e"]


def test_the_apps_ports_table_and_status_show_owner_and_engine() -> None:
    from app.engine.status_text import engine_summary
    from app.gui.ports_model import COLUMNS, PortsModel

    model = PortsModel()
    owner = {"pid": 42, "process": "nc", "container": "web", "image": "img:1"}
    entry = {"direction": "vm-to-host", "proto": "tcp", "port": 8000, "host_address": "127.0.0.1"}
    model.set_entries([{**entry, "vm_address": "0.0.0.0", "state": "active", "owner": owner}])
    assert COLUMNS[7] == "Owner"
    assert model.cell(0, 7) == "nc[42] container web (img:1)"
    running = {"state": "running", "storage_driver": "overlay2", "context": "hostnet"}
    assert engine_summary(running) == "running (overlay2): docker context use hostnet"
    assert (
        engine_summary({"state": "unavailable", "detail": "needs root"}) == "unavailable needs root"
    )


def test_backends_without_a_shared_kernel_say_why_the_engine_cannot_run(tmp_path: Path) -> None:
    from app.engine.daemon_engine import engine_target
    from vm.backends.registry import make_backend

    assert engine_target(None) == "the VM is not up"
    assert engine_target(make_backend("netns", {}, tmp_path / "netns")) == "the VM is not up"
    qemu = engine_target(make_backend("qemu", {"engine": True}, tmp_path / "qemu"))
    assert isinstance(qemu, str) and qemu.startswith("the qemu VM runs no engine: it needs")
    off = engine_target(make_backend("qemu", {}, tmp_path / "qemu"))
    assert isinstance(off, str) and off.startswith("the qemu VM was booted with the engine off")
    secret = tmp_path / "secret"
    secret.write_bytes(b"x" * 32)
    secret.chmod(0o600)
    attach = make_backend(
        "attach", {"transport": "tcp:127.0.0.1:1", "secret_file": str(secret)}, tmp_path / "a"
    )
    assert engine_target(attach) == "the attached VM is not up"
    asyncio.run(attach.up())  # reads the secret: the VM's own engine is reached through it
    own = engine_target(attach)
    assert isinstance(own, VmOwnEngineTarget)
    assert own.link.address == attach.address and own.link.secret == b"x" * 32


def test_the_status_says_whose_engine_runs_and_when_the_vm_has_none() -> None:
    from app.engine.status_text import engine_lines, engine_summary

    own = {"state": "running", "storage_driver": "overlay2", "context": "hostnet", "owner": "vm"}
    assert engine_summary(own) == "running (the VM's own, overlay2): docker context use hostnet"
    none = {
        "state": "none",
        "detail": "no Docker Engine in this VM: nothing answers at /var/run/docker.sock",
        "owner": "vm",
        "context": "hostnet",
        "docker_config": "/x",
        "docker_host": "unix:///x/docker.sock",
    }
    assert engine_lines(none)[0].startswith("  engine: none in the VM no Docker Engine in this VM")
