"""The layer-4 engine shared by the daemon and the agent: relays, discovery, wire protocol, policy.

Imports only the standard library, uvloop (optional) and pyroute2.
"""

__version__ = "0.1.0"
