"""The kernel path: forwarded IPv4 ports carried by nftables NAT, with no relay in user space.

``ruleset`` builds libnftables JSON documents (sans-I/O), ``nft`` runs them on the host or
in a namespace, and ``kernel_path`` keeps one VM's two tables in step with the mirrors.
"""
