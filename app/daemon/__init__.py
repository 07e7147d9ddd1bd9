"""The hostnet daemon: one per user; keeps the VM's ports on the host and the host's in the VM."""
