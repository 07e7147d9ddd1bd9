"""Which banners the daemon's state calls for: a lost daemon, a refusal, an error, a bad
settings file, a pending restart. Each names the problem and the fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BannerSpec:
    kind: str  # error, warning, info
    title: str
    body: str = ""
    fix: str = ""
    action: str = ""  # "start-daemon", "restart", "sign-in", "turn-off:KEY" or ""


# the refusals the app can fix itself, when the setting is not locked by an administrator
TURN_OFF = {
    "EnhancedContainerIsolation": "Turn off Enhanced Container Isolation",
    "UseWindowsContainers": "Switch to Linux containers",
}


def _refusal(reason: dict[str, Any]) -> BannerSpec:
    setting = str(reason.get("setting", ""))
    title = f"Host networking is refused: {setting}"
    problem, fix = str(reason.get("problem", "")), str(reason.get("fix", ""))
    if reason.get("source") != "admin-locked" and setting in TURN_OFF:
        return BannerSpec(
            "error", title, problem, f"{TURN_OFF[setting]} here.", f"turn-off:{setting}"
        )
    if setting == "SignInRequired":
        return BannerSpec("error", title, problem, "Sign in here.", "sign-in")
    return BannerSpec("error", title, problem, fix)


def banner_specs(
    *, connected: bool, lost_message: str, daemon_said: str, status: dict[str, Any]
) -> list[BannerSpec]:
    if not connected:
        body = lost_message
        if daemon_said:
            body = f"{lost_message}. The daemon said: {daemon_said}"
        return [
            BannerSpec(
                "error",
                "Not connected to the hostnet daemon",
                body,
                "Start it here or with `hostnet daemon`; the app reconnects by itself.",
                "start-daemon",
            )
        ]
    specs: list[BannerSpec] = []
    state = status.get("state")
    if state == "refused":
        specs.extend(_refusal(reason) for reason in status.get("reasons") or [])
    elif state == "error":
        vm = status.get("vm") or {}
        agent = status.get("agent") or {}
        details = [d for d in (vm.get("detail"), agent.get("detail")) if d]
        specs.append(
            BannerSpec(
                "error",
                "Host networking has a problem",
                "; ".join(str(d) for d in details) or str(status.get("message", "")),
                "Restart forwarding; if it persists, read the daemon log.",
                "restart",
            )
        )
    for problem in status.get("problems") or []:
        where = problem.get("file") or "the settings file"
        key = f"{problem['key']}: " if problem.get("key") else ""
        specs.append(
            BannerSpec(
                "warning",
                f"Problem in {where}",
                f"{key}{problem.get('message', '')}",
                str(problem.get("fix", "")),
            )
        )
    if status.get("restart_pending"):
        specs.append(
            BannerSpec(
                "info",
                "Some changes take effect after a restart",
                fix="Restart forwarding to apply them.",
                action="restart",
            )
        )
    return specs


def daemon_exit_reason(log_text: str, limit: int = 3) -> str:
    """The daemon's last own words ("hostnet daemon: ...") from the tail of its log."""
    lines = [
        line.removeprefix("hostnet daemon: ").strip()
        for line in log_text.splitlines()[-60:]
        if line.startswith("hostnet daemon: ") and "Control API on" not in line
    ]
    return " ".join(lines[-limit:])


ActionMap = dict[str, tuple[str, Callable[[], None]]]
