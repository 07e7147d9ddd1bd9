"""libnftables called in the daemon's own process, on the host and inside a namespace: the
document lands where it was sent and nowhere else, a refusal names the problem, and a
namespace entered for a call is not kept alive by it (its link goes when it is deleted)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
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


def test_a_process_with_over_a_thousand_descriptors_runs_nft_as_a_child(pair: NatPair) -> None:
    """libnftables 1.0.6 waits with select(2), and glibc aborts the process when the socket's
    number is 1024 or more: a daemon with a thousand mirrors died so ("bit out of range 0 -
    FD_SETSIZE on fd_set"). With that many descriptors open, the rules still go in, through
    an nft(8) child. In a process of its own, so this test's descriptors stay few."""
    script = (
        "import os, sys\n"
        "from proxy.nat import ruleset\n"
        "from proxy.nat.libnftables import select_safe\n"
        "from proxy.nat.nft import run_nft\n"
        "from proxy.nat.ruleset import NatLink\n"
        "held = [os.open('/dev/null', os.O_RDONLY) for _ in range(1100)]\n"
        "assert not select_safe()\n"
        "link = NatLink(*sys.argv[2:6])\n"
        "run_nft(ruleset.vm_table(link), netns=sys.argv[1])\n"
        "run_nft(ruleset.vm_ports(link, add=[('to_vm', 'tcp', 7411)]), netns=sys.argv[1])\n"
        "print(len(run_nft(ruleset.list_tables(), netns=sys.argv[1])['nftables']))\n"
    )
    link = pair.link
    done = subprocess.run(
        [sys.executable, "-c", script, pair.vm_path,
         link.host_if, link.vm_if, link.host_ip, link.vm_ip],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "7411" in pair.nft("vm", "list", "table", "ip", link.table)
    assert table_count(done.stdout) >= 2  # the metainfo item and our table


def table_count(output: str) -> int:
    return int(output.strip().splitlines()[-1])
