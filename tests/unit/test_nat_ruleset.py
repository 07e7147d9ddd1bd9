"""The kernel path's nftables JSON documents, built without touching the system."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.nat import ruleset
from proxy.nat.kernel_path import counters_from, ports_named
from proxy.nat.ruleset import NatLink, RulesetError

LINK = NatLink("hn1234abcdh", "hn1234abcdv", "198.18.0.1", "198.18.0.2")


def commands(document: ruleset.Document, op: str, kind: str) -> list[dict[str, Any]]:
    return [item[op][kind] for item in document["nftables"] if kind in item.get(op, {})]


def rule_text(document: ruleset.Document) -> str:
    return json.dumps(commands(document, "add", "rule"))


def test_each_vm_gets_its_own_table_named_after_its_link() -> None:
    other = NatLink("hn9999ffffh", "hn9999ffffv", "198.18.0.5", "198.18.0.6")
    assert LINK.table != other.table
    assert ruleset.interface_of(LINK.table) == LINK.host_if
    assert ruleset.interface_of("race16_hold") is None  # another helper's table is not ours


@pytest.mark.parametrize("name", ["", "a" * 16, "eth0; flush ruleset", "x y", "../lo"])
def test_an_interface_name_that_is_not_one_is_refused(name: str) -> None:
    with pytest.raises(RulesetError, match="not a network interface name"):
        NatLink(name, "hn1v", "198.18.0.1", "198.18.0.2")


@pytest.mark.parametrize(
    "build", [lambda: ruleset.host_table(LINK), lambda: ruleset.vm_table(LINK)]
)
def test_a_table_document_replaces_the_table_in_one_transaction(build: Any) -> None:
    document = build()
    first = document["nftables"][:3]
    table = {"family": "ip", "name": LINK.table}
    assert first == [
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
    ]
    assert all(chain["table"] == LINK.table for chain in commands(document, "add", "chain"))


def test_the_host_table_carries_loopback_only_unless_expose_all() -> None:
    loopback_only = rule_text(ruleset.host_table(LINK))
    assert '"right": "127.0.0.1"' in loopback_only and '"fib"' not in loopback_only
    exposed = rule_text(ruleset.host_table(LINK, expose_all=True))
    assert '"fib"' in exposed


def test_the_host_table_masquerades_keeping_ports_and_guards_its_loopback() -> None:
    """Not fully-random: a random source port meets other clients' TIME_WAIT tuples."""
    document = ruleset.host_table(LINK)
    rules = commands(document, "add", "rule")
    assert any({"masquerade": None} in r["expr"] for r in rules)
    assert "fully-random" not in json.dumps(document)
    guard = [r for r in rules if r["chain"] == "filter_input" and {"drop": None} in r["expr"]]
    assert len(guard) == 1
    assert {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": LINK.host_if}} in (
        guard[0]["expr"]
    )
    hooks = {c["name"]: (c["type"], c["hook"]) for c in commands(document, "add", "chain")}
    assert hooks["nat_output"] == ("nat", "output")
    assert hooks["nat_input"] == ("nat", "input")


def test_the_vm_table_sends_back_to_loopback_from_loopback() -> None:
    rules = commands(ruleset.vm_table(LINK), "add", "rule")
    prerouting = next(r for r in rules if r["chain"] == "nat_prerouting")
    assert {"dnat": {"addr": "127.0.0.1"}} in prerouting["expr"]
    snat = next(r for r in rules if r["chain"] == "nat_input")
    assert {"snat": {"addr": "127.0.0.1"}} in snat["expr"]


def test_adding_a_port_is_one_element_per_map_with_its_counters() -> None:
    document = ruleset.host_ports(LINK, add=[("to_vm", "tcp", 8080)])
    counters = [c["name"] for c in commands(document, "add", "counter")]
    assert counters == ["to_vm_conns_tcp_8080", "to_vm_in_tcp_8080", "to_vm_out_tcp_8080"]
    elements = commands(document, "add", "element")
    assert [e["name"] for e in elements] == ["to_vm_conns", "to_vm_in", "to_vm_out"]
    assert elements[0]["elem"] == [[{"concat": ["tcp", 8080]}, "to_vm_conns_tcp_8080"]]


def test_removing_a_port_removes_its_elements_before_its_counters() -> None:
    document = ruleset.host_ports(LINK, remove=[("to_host", "udp", 53)])
    kinds = [next(iter(item["delete"])) for item in document["nftables"]]
    assert kinds == ["element", "counter"] * 3


def test_the_vm_sets_take_and_drop_elements() -> None:
    document = ruleset.vm_ports(LINK, add=[("to_host", "udp", 53)], remove=[("to_vm", "tcp", 1)])
    assert [next(iter(item)) for item in document["nftables"]] == ["delete", "add"]
    assert document["nftables"][1]["add"]["element"]["name"] == "to_host"


def test_no_port_no_document_entries() -> None:
    assert ruleset.host_ports(LINK)["nftables"] == []
    assert ruleset.vm_ports(LINK)["nftables"] == []


def test_route_localnet_is_only_ever_asked_for_one_interface() -> None:
    assert ruleset.sysctl_key("hn1v") == "net/ipv4/conf/hn1v/route_localnet"
    with pytest.raises(RulesetError):
        ruleset.sysctl_key("all/../default")


def test_counters_are_read_per_port_from_nfts_answer() -> None:
    def counter(name: str, packets: int, size: int) -> dict[str, Any]:
        return {"counter": {"family": "ip", "name": name, "packets": packets, "bytes": size}}

    answer = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            counter("to_vm_conns_tcp_80", 3, 180),
            counter("to_vm_in_tcp_80", 30, 4000),
            counter("to_vm_out_tcp_80", 20, 9000),
            counter("to_host_conns_udp_53", 2, 100),
        ]
    }
    result = counters_from(answer, [("to_vm", "tcp", 80), ("to_host", "udp", 53)])
    tcp = result[("to_vm", "tcp", 80)]
    assert (tcp.connections_total, tcp.bytes_in, tcp.bytes_out) == (3, 4000, 9000)
    assert result[("to_host", "udp", 53)].udp_flows_total == 2


def test_a_killed_daemons_ports_are_read_back_from_its_counter_names() -> None:
    answer = {
        "nftables": [
            {"counter": {"name": "to_vm_conns_tcp_8080", "packets": 1, "bytes": 60}},
            {"counter": {"name": "to_vm_in_tcp_8080", "packets": 9, "bytes": 900}},
            {"counter": {"name": "to_host_conns_udp_53", "packets": 0, "bytes": 0}},
            {"counter": {"name": "someone_elses_counter", "packets": 0, "bytes": 0}},
        ]
    }
    assert ports_named(answer) == {("to_vm", "tcp", 8080), ("to_host", "udp", 53)}
