"""The Docker Engine in the VM: dockerd, containerd and runc from Debian, supervised by the daemon.

``layout`` says where its files live, ``dockerd_command`` how it is started, ``supervisor``
keeps it running, ``host_gateway`` and ``dns`` make ``host.docker.internal`` work from
containers on any network, ``listener_owners`` says which process holds a port.
"""
