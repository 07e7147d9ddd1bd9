"""The host side of the VM's Docker Engine: the daemon's part, the docker context, the
credential helper and the owners of forwarded ports."""
