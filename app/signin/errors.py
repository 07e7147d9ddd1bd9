"""What can go wrong while signing in, each with a message a person can act on.

Every message names the problem and the fix; the CLI prints ``str(error)`` and the GUI shows it.
"""

from __future__ import annotations

from proxy.errors import HostnetError


class SignInError(HostnetError):
    """Base class: signing in, refreshing or signing out did not work."""


class CredentialsRefused(SignInError):
    """The server said no: wrong password, revoked token, invalid grant."""


class ServerUnavailable(SignInError):
    """The sign-in server is down, unreachable, slow past the time limit, or answered nonsense."""


class AccessDenied(SignInError):
    """The person declined (consent page 'abort', device flow denied)."""


class FlowExpired(SignInError):
    """The device code or the browser sign-in took too long and expired."""


class SignInCancelled(SignInError):
    """The caller cancelled the sign-in."""


class TokenInvalid(SignInError):
    """An ID token failed validation: issuer, audience, expiry, nonce or signature."""


class ConfigurationError(SignInError):
    """The sign-in settings are missing or wrong (issuer, client ID, registry URL)."""


class KeyringError(SignInError):
    """The OS keyring could not store or read a secret."""


class KeyringLocked(KeyringError):
    """The keyring exists but is locked and would not unlock."""


class NoKeyring(KeyringError):
    """No real keyring backend exists on this machine (only keyring's fail/null backends)."""


class NotSignedIn(SignInError):
    """An operation needs a signed-in account and there is none."""
