"""Values typed on the command line, parsed by each key's type."""

from __future__ import annotations

from typing import Any

import pytest

from app.settings import SettingValueError, parse_value, specs


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("HostNetworkingEnabled", "true", True),
        ("HostNetworkingEnabled", "ON", True),
        ("HostNetworkingEnabled", "1", True),
        ("HostNetworkingEnabled", "off", False),
        ("HostNetworkingEnabled", "0", False),
        ("HostNetworkingEnabled", "False", False),
        ("HostNetworkingUdpIdleTimeoutSeconds", "30", 30),
        ("HostNetworkingUdpIdleTimeoutSeconds", "0.5", 0.5),
        ("HostNetworkingExcludedPorts", "22,8000-8010", [22, "8000-8010"]),
        ("HostNetworkingExcludedPorts", " 22 , 80 ", [22, 80]),
        ("HostNetworkingExcludedPorts", '[22, "8000-8010"]', [22, "8000-8010"]),
        ("HostNetworkingExcludedPorts", "", []),
        ("HostNetworkingExcludedPorts", "[]", []),
        ("VmBackend", "QEMU", "qemu"),
        ("VmOptions", '{"memory_mb": 512}', {"memory_mb": 512}),
        ("DockerRegistry", "http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("OidcIssuer", "", ""),
    ],
)
def test_parses(key: str, text: str, value: Any) -> None:
    parsed = parse_value(specs()[key], text)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    ("key", "text", "expected_in_message"),
    [
        ("HostNetworkingEnabled", "maybe", "a boolean"),
        ("HostNetworkingEnabled", "2", "a boolean"),
        ("HostNetworkingUdpIdleTimeoutSeconds", "soon", "a number"),
        ("HostNetworkingUdpIdleTimeoutSeconds", "-1", "too small: it must be more than 0"),
        ("HostNetworkingUdpIdleTimeoutSeconds", "1e9", "too large"),
        ("HostNetworkingUdpIdleTimeoutSeconds", "nan", "a number"),
        ("HostNetworkingExcludedPorts", "70000", "outside 1-65535"),
        ("HostNetworkingExcludedPorts", "http", "not a port"),
        ("HostNetworkingExcludedPorts", "10-5", "backwards"),
        ("HostNetworkingExcludedPorts", "[1,", "ports"),
        ("VmBackend", "xen", "one of 'netns', 'qemu', 'attach'"),
        ("VmOptions", "memory=1", "a JSON object"),
        ("VmOptions", "[1]", "a JSON object"),
        ("DockerRegistry", "registry.example.com", "does not have the form of https://"),
    ],
)
def test_refuses_with_key_type_and_example(key: str, text: str, expected_in_message: str) -> None:
    with pytest.raises(SettingValueError) as caught:
        parse_value(specs()[key], text)
    problem = caught.value.setting
    assert problem.key == key
    assert expected_in_message in problem.message
    assert problem.fix.startswith(f"Example: `hostnet settings set {key} ")
    # the example in the fix really is accepted
    example = problem.fix.removeprefix(f"Example: `hostnet settings set {key} ").rstrip("`.")
    parse_value(specs()[key], example.strip("'"))
