"""How the daemon and the agent reach each other: unix socket, TCP or AF_VSOCK.

One authenticated connection per stream (so a stream is a kernel socket that splice(2) can
copy), plus one control connection. Where both ends share a kernel (a unix socket), the
side that connects a target hands the connected socket itself over (SCM_RIGHTS), so the
relay is a single splice between two kernel sockets.
"""
