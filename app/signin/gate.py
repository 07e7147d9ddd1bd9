"""The sign-in gate's other half: signing out turns HostNetworkingEnabled off.

Turning it on while signed out is refused by the settings store itself (it asks
``app.signin.state.is_signed_in``). The daemon watches the settings file and stops forwarding
when the value goes false.
"""

from __future__ import annotations

from app.paths import Paths


def turn_off_host_networking(paths: Paths) -> str:
    """Set HostNetworkingEnabled to false if it is on; a note for the person, or ''."""
    try:
        from app.settings.errors import SettingsError
        from app.settings.store import SettingsStore
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("app.settings"):
            return ""
        raise
    store = SettingsStore(paths)
    try:
        effective = store.load()
        if not effective.get("HostNetworkingEnabled", False):
            return ""
        if effective.locked("HostNetworkingEnabled"):
            return (
                "Host networking is locked on by your administrator, so signing out does not "
                "turn it off."
            )
        store.set("HostNetworkingEnabled", False)
    except SettingsError as exc:
        return f"Could not turn host networking off: {exc}"
    return "Host networking is now off."
