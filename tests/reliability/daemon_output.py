"""Keep reading a test daemon's output so it never blocks writing its log.

``start_daemon`` gives the daemon a pipe for stdout and stderr; a daemon that logs a lot
(bad requests, a soak) fills the pipe's 64 KiB and then blocks in write() with the event
loop stopped. The output is kept (the last lines) for a failure message.
"""

from __future__ import annotations

import collections
import threading

from tests.integration.daemon_fixture import RunningDaemon


def drain_output(daemon: RunningDaemon, keep: int = 200) -> collections.deque[str]:
    lines: collections.deque[str] = collections.deque(maxlen=keep)
    stream = daemon.proc.stdout
    if stream is None:
        return lines

    def pump() -> None:
        for line in stream:
            lines.append(line)

    threading.Thread(target=pump, name="daemon-output", daemon=True).start()
    return lines
