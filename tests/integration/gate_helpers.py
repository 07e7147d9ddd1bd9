"""Helpers for the tests of the daemon's gate inputs: the CLI run in this process, sign-in
against the test registry, and whether a control API answers yet."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from unittest import mock

import pytest

from app.cli import main
from app.control_client import ControlClient
from tests.signin_peers.fixtures import DOCKER_PASSWORD, DOCKER_USER, Registry

TURN_IT_ON = "Turn it on"


def cli(capsys: pytest.CaptureFixture[str], *args: str, stdin: str = "") -> Ran:
    """The CLI's own main() in this process (a new interpreter takes seconds on a busy
    machine, and the held boot must stay inside the agent's start timeout)."""
    capsys.readouterr()
    with mock.patch.object(sys, "stdin", io.StringIO(stdin)):
        code = main(list(args))
    out, err = capsys.readouterr()
    return Ran(code, out, err)


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def login(capsys: pytest.CaptureFixture[str], registry: Registry) -> Ran:
    return cli(
        capsys,
        "login",
        "--registry",
        registry.url,
        "-u",
        DOCKER_USER,
        "--password-stdin",
        stdin=DOCKER_PASSWORD + "\n",
    )


def answers(client: ControlClient) -> bool:
    try:
        client.get("/v1/status")
    except OSError:
        return False
    return True
