"""Hold, then decide: a first connection attempt to a port with no listener on this side is
held in a netfilter queue until a targeted check on the other side has made (or not made) the
mirror, so a port works from the other side as soon as ``listen()`` or ``bind()`` returns.
See README "Ports without a race" for what is guaranteed where."""
