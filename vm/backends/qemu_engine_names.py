"""Names the QEMU backend and the engine helper in its guest agree on (a module of its own:
the guest imports it without the backend's host-side code)."""

ENGINE_PORT_NAME = "org.hostnet.engine.0"
"""The virtio-serial port the engine's requests and API streams are multiplexed over."""
DISK_SERIAL = "hostnet-engine"
"""The serial of the virtio-blk data disk, which the guest finds it by (it has no udev)."""
