"""Settings: the user's settings-store.json, the admin's admin-settings.json, the settings in
effect, and the changes to them. See ``store.SettingsStore`` for the entry point."""

from __future__ import annotations

from app.settings.admin import AdminEntry, AdminSettings, read_admin_settings
from app.settings.effective import EffectiveSettings, EffectiveValue, combine
from app.settings.errors import (
    ReadOnlySettingError,
    SettingLockedError,
    SettingsError,
    SettingsWriteError,
    SettingValueError,
    SignInNeededError,
    UnknownSettingError,
)
from app.settings.parse import parse_value
from app.settings.ports import is_excluded, port_ranges
from app.settings.problems import Problem
from app.settings.schema import SettingSpec, current_version, resolve_key, specs
from app.settings.store import SettingsChange, SettingsStore
from app.settings.user_store import UserSettings, read_user_settings
from app.settings.watch import watch_settings

__all__ = [
    "AdminEntry",
    "AdminSettings",
    "EffectiveSettings",
    "EffectiveValue",
    "Problem",
    "ReadOnlySettingError",
    "SettingLockedError",
    "SettingSpec",
    "SettingValueError",
    "SettingsChange",
    "SettingsError",
    "SettingsStore",
    "SettingsWriteError",
    "SignInNeededError",
    "UnknownSettingError",
    "UserSettings",
    "combine",
    "current_version",
    "is_excluded",
    "parse_value",
    "port_ranges",
    "read_admin_settings",
    "read_user_settings",
    "resolve_key",
    "specs",
    "watch_settings",
]
