"""Why a change to the settings was refused. Each error carries a Problem (message and fix)."""

from __future__ import annotations

from app.settings.problems import Problem


class SettingsError(Exception):
    """A change that cannot be made; ``problem`` says why and how to fix it."""

    exit_code = 2

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class UnknownSettingError(SettingsError):
    pass


class SettingValueError(SettingsError):
    """The value has the wrong type or is out of range."""


class ReadOnlySettingError(SettingsError):
    """The key is managed by hostnet (SettingsVersion) or only an administrator sets it."""


class SettingLockedError(SettingsError):
    """An administrator locked the key in admin-settings.json."""

    exit_code = 3


class SignInNeededError(SettingsError):
    """Turning host networking on needs a signed-in account."""

    exit_code = 4


class SettingsWriteError(SettingsError):
    """The settings file could not be written (permissions, disk full...)."""
