"""The engine's lines in ``hostnet status``: its state and both ways to reach it."""

from __future__ import annotations

from typing import Any


def state_text(engine: dict[str, Any]) -> str:
    """``running (overlay2)``; ``running (the VM's own, overlay2)`` for an attached VM's
    engine; ``none in the VM`` when the attached VM runs none."""
    state = str(engine["state"])
    own = engine.get("owner") == "vm"
    if state == "none":
        return "none in the VM"
    if state != "running":
        return state
    driver = engine.get("storage_driver") or ""
    inside = ", ".join(part for part in ("the VM's own" if own else "", driver) if part)
    return f"running ({inside})" if inside else "running"


def engine_lines(engine: dict[str, Any]) -> list[str]:
    state = engine["state"]
    lines = [f"  engine: {state_text(engine)} {engine['detail']}".rstrip()]
    if state == "off":
        lines.append("    turn it on: hostnet settings set ContainerEngineEnabled true")
        return lines
    if engine.get("restarts"):
        lines.append(f"    restarted {engine['restarts']} time(s)")
    lines.append(f"    docker context: docker context use {engine['context']}")
    lines.append(f"      (the context lives in {engine['docker_config']})")
    lines.append('    or for one shell: eval "$(hostnet docker-env)"')
    lines.append(f"      (DOCKER_HOST={engine['docker_host']})")
    return lines


def owner_text(owner: dict[str, Any] | None) -> str:
    """``name[pid]``, and for a container ``container NAME (IMAGE)``; ``-`` when unknown."""
    if not owner:
        return "-"
    text = f"{owner['process']}[{owner['pid']}]"
    if owner.get("container"):
        text += f" container {owner['container']} ({owner['image']})"
    return text


def engine_summary(engine: dict[str, Any] | None) -> str:
    """One line for the app: the state, and how to reach the engine while it runs."""
    if not engine:
        return "—"
    if engine["state"] == "running":
        return f"{state_text(engine)}: docker context use {engine['context']}"
    return f"{state_text(engine)} {engine['detail']}".strip()
