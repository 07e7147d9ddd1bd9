"""VM backends: the ways hostnet gets a Linux VM to run its agent in (netns, qemu, attach)."""
