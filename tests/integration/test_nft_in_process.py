"""libnftables called in the daemon's own process, on the host and inside a namespace: the
document lands where it was sent and nowhere else, a refusal names the problem, and a
namespace entered for a call is not kept alive by it (its link goes when it is deleted)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from proxy.nat import ruleset
from proxy.nat.nft import NftError, nft_available, run_nft, run_nft_async, write_sysctl
from proxy.netns_entry import call_in_netns
from tests.integration.nat_namespaces import NatPair, nat_pair

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nft need root"),
    pytest.mark.skipif(not nft_available(), reason="libnftables missing: apt install nftables"),
]


@pytest.fixture
def pair() -> Iterator[NatPair]:
    with nat_pair("np") as made:
        yield made


def tables(pair: NatPair, side: str) -> str:
    return pair.nft(side, "list", "tables")


def own_netns() -> int:
    return os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino


def test_a_document_goes_to_the_namespace_it_names_only(pair: NatPair) -> None:
    before = own_netns()
    run_nft(ruleset.vm_table(pair.link), netns=pair.vm_path)
    asyncio.run(run_nft_async(ruleset.host_table(pair.link), netns=pair.host_path))
    table = pair.link.table
    assert table in tables(pair, "vm")
    assert table in tables(pair, "host")
    listed = run_nft(ruleset.list_tables(), netns=pair.vm_path)
    names = [item["table"]["name"] for item in listed["nftables"] if "table" in item]
    assert names == [table]
    assert (
        table not in subprocess.run(["nft", "list", "tables"], capture_output=True).stdout.decode()
    )
    assert own_netns() == before  # the caller's thread never left its namespace


def test_a_refused_document_says_what_nftables_said(pair: NatPair) -> None:
    missing = {
        "nftables": [
            {
                "add": {
                    "element": {
                        "family": "ip",
                        "table": "no_such_table",
                        "name": "to_vm",
                        "elem": [{"concat": ["tcp", 80]}],
                    }
                }
            }
        ]
    }
    with pytest.raises(NftError) as refused:
        run_nft(missing, netns=pair.vm_path)
    assert "refused the rules in namespace" in str(refused.value)
    assert "No such file or directory" in str(refused.value)
    assert "HostNetworkingDataPath" in refused.value.fix


def test_a_namespace_that_is_gone_is_an_nft_error_not_a_crash(pair: NatPair) -> None:
    with pytest.raises(NftError, match="could not run in namespace /run/netns/nope"):
        run_nft(ruleset.list_tables(), netns="/run/netns/nope")
    with pytest.raises(NftError, match="cannot set"):
        write_sysctl(ruleset.sysctl_key(pair.link.vm_if), "1", netns="/run/netns/nope")


def test_sysctl_is_written_inside_the_namespace(pair: NatPair) -> None:
    write_sysctl(ruleset.sysctl_key(pair.link.vm_if), "1", netns=pair.vm_path)
    assert pair.sysctl("vm", pair.link.vm_if) == "1"
    assert pair.sysctl("host", pair.link.host_if) == "0"


def test_a_call_does_not_keep_the_namespace_it_entered() -> None:
    """Deleting the namespace after a call frees it: its veth end goes, so the peer left in
    this namespace goes too (a kept netlink socket would keep both, and the VM's link)."""
    name, here, there = f"nftgone{os.getpid() % 10000}", "ngh0", "ngv0"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "link", "add", here, "type", "veth", "peer", "name", there], check=True
        )
        subprocess.run(["ip", "link", "set", there, "netns", name], check=True)
        run_nft(
            {"nftables": [{"add": {"table": {"family": "ip", "name": "gone_test"}}}]},
            netns=f"/run/netns/{name}",
        )
        inside = f"/proc/sys/net/ipv4/conf/{there}"
        assert call_in_netns(f"/run/netns/{name}", lambda: os.path.exists(inside))
        assert not os.path.exists(inside)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    for _ in range(100):
        if not os.path.exists(f"/sys/class/net/{here}"):
            break
        threading.Event().wait(0.05)
    assert not os.path.exists(f"/sys/class/net/{here}")
