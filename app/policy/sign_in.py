"""The sign-in rule, in one place: host networking is for a signed-in person.

- Turning ``HostNetworkingEnabled`` on needs a signed-in account (``turning_on_refusal``).
- Signing out turns it off, unless an administrator locked it on (``after_sign_out``).
- An administrator's ``SignInRequired`` refuses forwarding while nobody is signed in, whatever
  turned the setting on, a lock included (``sign_in_reason``, asked by the policy gate).

The settings writer (``app.settings_writer``), the gate and the daemon ask these functions;
no other code knows the rule. Pure: the callers read the settings and the sign-in state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from app.policy.reasons import ADMIN_FILE, GateSetting, Reason

ENABLED: Final = "HostNetworkingEnabled"
SIGN_IN_REQUIRED: Final = "SignInRequired"
SIGN_IN_FIX: Final = "Sign in with `hostnet login` (or from the app), then try again."


@dataclass(frozen=True)
class Refusal:
    """Why a change is refused, and what to do about it."""

    problem: str
    fix: str


@dataclass(frozen=True)
class SignOutEffect:
    """What signing out does to HostNetworkingEnabled: turn it off or not, and what to say."""

    turn_off: bool
    note: str


def turning_on_refusal(changes: Mapping[str, object], *, signed_in: bool) -> Refusal | None:
    """The refusal when CHANGES (canonical keys) turn host networking on with nobody signed in.

    Asked even when the value is already on (or locked on): asking to turn it on is refused."""
    if changes.get(ENABLED) is True and not signed_in:
        return Refusal(
            "turning host networking on needs a signed-in account, and nobody is signed in.",
            SIGN_IN_FIX,
        )
    return None


def after_sign_out(*, enabled: bool, locked: bool) -> SignOutEffect:
    """What signing out does to a HostNetworkingEnabled that is ENABLED (and LOCKED or not)."""
    if not enabled:
        return SignOutEffect(False, "")
    if locked:
        return SignOutEffect(
            False,
            "Host networking is locked on by your administrator, so signing out does not "
            "turn it off.",
        )
    return SignOutEffect(True, "Host networking is now off.")


def sign_in_reason(required: GateSetting, *, signed_in: bool) -> Reason | None:
    """The gate's reason to refuse when the administrator requires sign-in and nobody is in."""
    if required.value is not True or signed_in:
        return None
    return Reason(
        SIGN_IN_REQUIRED,
        required.source,
        required.location,
        f"Your administrator requires sign-in for host networking "
        f"({SIGN_IN_REQUIRED} in {required.location or ADMIN_FILE}), and nobody is signed in.",
        SIGN_IN_FIX,
    )
