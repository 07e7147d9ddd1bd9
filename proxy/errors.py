"""The one error root: every failure hostnet reports says what went wrong and what to do.

``HostnetError(problem, fix)`` is raised anywhere (engine, VM, settings, sign-in) and
converted at exactly two boundaries: the daemon's control API turns it into JSON
``{"error", "problem", "fix"}`` with ``http_status``, and the CLI's main prints it and exits
with ``exit_code``. Subclasses keep their historic bases as well (``OSError``, ``ValueError``)
where callers catch those families, so the root is added without changing what is caught.
"""

from __future__ import annotations


class HostnetError(Exception):
    """A failure with a ``problem`` (what went wrong) and a ``fix`` (what to do about it)."""

    kind = "error"  # machine-readable, the control API's "error" field
    http_status = 500
    exit_code = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        if self.fix and self.fix not in self.problem:
            return f"{self.problem}: {self.fix}"
        return self.problem

    def to_json(self) -> dict[str, str]:
        return {"error": self.kind, "problem": self.problem, "fix": self.fix}


class HostnetOSError(OSError, HostnetError):
    """A HostnetError that is also an OSError (errno, strerror), for failures of the system
    calls under a socket or a namespace: callers that catch OSError still catch it."""

    def __init__(self, errno_: int | None, problem: str, fix: str = "") -> None:
        OSError.__init__(self, errno_, problem)
        self.problem = problem
        self.fix = fix
