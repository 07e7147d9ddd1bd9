"""A cloud-init snippet that installs the guest agent at a VM's first boot.

It carries the zipapp (gzip + base64) and the systemd unit, listens on vsock port 5123 on
any CID, and enables the unit. The per-VM secret is not in it: the unit starts once
/etc/hostnet/agent.secret exists (mode 0600), e.g. from `hostnet vm install-agent` or a
second write_files entry of your own.
"""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

DEFAULT_LISTEN = "vsock:4294967295:5123"  # VMADDR_CID_ANY


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "".join(pad + line + "\n" for line in text.splitlines())


def cloud_init_snippet(zipapp: Path, unit: Path, listen: str = DEFAULT_LISTEN) -> str:
    payload = base64.b64encode(gzip.compress(zipapp.read_bytes(), mtime=0)).decode()
    return (
        "#cloud-config\n"
        "# hostnet guest agent; put the per-VM secret in /etc/hostnet/agent.secret (0600)\n"
        "write_files:\n"
        "  - path: /usr/lib/hostnet/hostnet-agent.pyz\n"
        "    permissions: '0644'\n"
        "    encoding: gz+b64\n"
        f"    content: {payload}\n"
        "  - path: /etc/systemd/system/hostnet-agent.service\n"
        "    permissions: '0644'\n"
        "    content: |\n"
        f"{_indent(unit.read_text(), 6)}"
        "  - path: /etc/hostnet/agent.env\n"
        "    permissions: '0644'\n"
        f"    content: HOSTNET_AGENT_LISTEN={listen}\n"
        "runcmd:\n"
        "  - [systemctl, daemon-reload]\n"
        "  - [systemctl, enable, --now, hostnet-agent.service]\n"
    )
