"""Why a change to the settings was refused. Each error carries a Problem (message and fix)."""

from __future__ import annotations

from app.settings.problems import Problem
from proxy.errors import HostnetError


class SettingsError(HostnetError):
    """A change that cannot be made; ``setting`` holds the structured problem (key, file)."""

    kind = "bad-value"
    http_status = 400
    exit_code = 2

    def __init__(self, setting: Problem) -> None:
        where = f"{setting.file}: " if setting.file else ""
        subject = f"{setting.key}: " if setting.key else ""
        super().__init__(f"{where}{subject}{setting.message}", setting.fix)
        self.setting = setting


class UnknownSettingError(SettingsError):
    kind = "unknown-setting"
    http_status = 404


class SettingValueError(SettingsError):
    """The value has the wrong type or is out of range."""


class ReadOnlySettingError(SettingsError):
    """The key is managed by hostnet (SettingsVersion) or only an administrator sets it."""


class SettingLockedError(SettingsError):
    """An administrator locked the key in admin-settings.json."""

    kind = "locked"
    http_status = 403
    exit_code = 3


class SignInNeededError(SettingsError):
    """Turning host networking on needs a signed-in account."""

    kind = "sign-in-needed"
    http_status = 409
    exit_code = 4


class SettingsWriteError(SettingsError):
    """The settings file could not be written (permissions, disk full...)."""
