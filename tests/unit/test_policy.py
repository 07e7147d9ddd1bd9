"""The policy gate: off / allowed / refused, with reasons that name the setting, its origin
and the fix, over the whole matrix of ECI x Windows containers x enabled x source."""

from __future__ import annotations

import itertools

import pytest

from app.policy.gate import (
    ECI,
    ENABLED,
    SIGN_IN_REQUIRED,
    SOURCES,
    WINDOWS_CONTAINERS,
    Allow,
    GateSetting,
    Off,
    Refuse,
    Source,
    blockers,
    evaluate,
)

USER_FILE = "/home/alice/.config/hostnet/settings-store.json"
ADMIN_FILE = "/etc/hostnet/admin-settings.json"


def located(value: object, source: Source) -> GateSetting:
    if source == "user":
        return GateSetting(value, source, USER_FILE)
    if source.startswith("admin"):
        return GateSetting(value, source, ADMIN_FILE)
    return GateSetting(value, source, None)


MATRIX = list(itertools.product([False, True], [False, True], [False, True], SOURCES))


@pytest.mark.parametrize(("eci", "windows", "enabled", "source"), MATRIX)
def test_gate_matrix(eci: bool, windows: bool, enabled: bool, source: Source) -> None:
    settings = {
        ENABLED: GateSetting(enabled, "user", USER_FILE),
        ECI: located(eci, source),
        WINDOWS_CONTAINERS: located(windows, source),
    }
    decision = evaluate(settings, signed_in=True)
    expected_blockers = [key for key, on in ((ECI, eci), (WINDOWS_CONTAINERS, windows)) if on]
    if not enabled:
        assert isinstance(decision, Off)
        assert decision.state == "off"
        assert [r.setting for r in decision.blockers] == expected_blockers
        return
    if not expected_blockers:
        assert isinstance(decision, Allow)
        assert decision.state == "allowed"
        return
    assert isinstance(decision, Refuse)
    assert decision.state == "refused"
    assert [r.setting for r in decision.reasons] == expected_blockers
    for reason in decision.reasons:
        assert reason.source == source
        assert reason.setting in reason.problem
        assert reason.setting in decision.message
        if source == "admin-locked":
            assert f"locked by your administrator in {ADMIN_FILE}" in reason.problem
            assert "Ask your administrator" in reason.fix
            assert ADMIN_FILE in reason.fix
            assert "hostnet settings set" not in reason.fix
        elif source == "admin-default":
            assert "not locked" in reason.problem
            assert f"`hostnet settings set {reason.setting} false`" in reason.fix
        elif source == "user":
            assert f"set in {USER_FILE}" in reason.problem
            assert f"`hostnet settings set {reason.setting} false`" in reason.fix
        else:
            assert "the default" in reason.problem
            assert f"`hostnet settings set {reason.setting} false`" in reason.fix


def test_eci_message_says_why() -> None:
    decision = evaluate(
        {ENABLED: GateSetting(True), ECI: GateSetting(True, "admin-locked", ADMIN_FILE)},
        signed_in=True,
    )
    assert isinstance(decision, Refuse)
    assert decision.message.startswith("Host networking is refused:")
    assert "cannot run with Enhanced Container Isolation" in decision.message


def test_windows_containers_fix_mentions_linux_containers() -> None:
    decision = evaluate(
        {ENABLED: GateSetting(True), WINDOWS_CONTAINERS: GateSetting(True, "user", USER_FILE)},
        signed_in=True,
    )
    assert isinstance(decision, Refuse)
    assert "Linux containers" in decision.reasons[0].message


@pytest.mark.parametrize("signed_in", [False, True])
@pytest.mark.parametrize("required", [False, True])
def test_sign_in_required_by_admin(signed_in: bool, required: bool) -> None:
    settings = {
        ENABLED: GateSetting(True, "user", USER_FILE),
        SIGN_IN_REQUIRED: GateSetting(required, "admin-locked", ADMIN_FILE),
    }
    decision = evaluate(settings, signed_in=signed_in)
    if required and not signed_in:
        assert isinstance(decision, Refuse)
        (reason,) = decision.reasons
        assert reason.setting == SIGN_IN_REQUIRED
        assert "`hostnet login`" in reason.fix
        assert ADMIN_FILE in reason.problem
    else:
        assert isinstance(decision, Allow)


def test_not_signed_in_without_sign_in_required_is_allowed() -> None:
    """HostNetworkingEnabled needs sign-in to be turned on (app.policy.sign_in, asked by the
    settings writer); the gate itself refuses for sign-in only when the administrator
    requires it."""
    assert isinstance(evaluate({ENABLED: GateSetting(True)}, signed_in=False), Allow)


def test_broken_admin_file_refuses_even_when_nothing_else_does() -> None:
    decision = evaluate(
        {ENABLED: GateSetting(True, "user", USER_FILE)},
        signed_in=True,
        admin_problems=("it is not valid JSON",),
        admin_location=ADMIN_FILE,
    )
    assert isinstance(decision, Refuse)
    assert ADMIN_FILE in decision.reasons[0].problem
    assert "Ask your administrator to fix" in decision.reasons[0].fix


def test_every_reason_is_listed_together() -> None:
    settings = {
        ENABLED: GateSetting(True),
        ECI: GateSetting(True, "user", USER_FILE),
        WINDOWS_CONTAINERS: GateSetting(True, "admin-locked", ADMIN_FILE),
        SIGN_IN_REQUIRED: GateSetting(True, "admin-locked", ADMIN_FILE),
    }
    decision = evaluate(settings, signed_in=False, admin_problems=("x",))
    assert isinstance(decision, Refuse)
    assert [r.setting for r in decision.reasons] == [
        ECI,
        WINDOWS_CONTAINERS,
        SIGN_IN_REQUIRED,
        "admin-settings.json",
    ]
    assert decision.message.count("\n- ") == 4


def test_off_when_locked_off_says_so() -> None:
    decision = evaluate({ENABLED: GateSetting(False, "admin-locked", ADMIN_FILE)}, signed_in=True)
    assert isinstance(decision, Off)
    assert "locked off by your administrator" in decision.message
    assert ADMIN_FILE in decision.message


@pytest.mark.parametrize("value", [1, "true", "yes", None, [True]])
def test_only_true_counts_as_on(value: object) -> None:
    """The gate never treats a truthy non-boolean as on; the store validates types first."""
    settings = {ENABLED: GateSetting(True), ECI: GateSetting(value)}
    assert isinstance(evaluate(settings, signed_in=True), Allow)
    assert isinstance(evaluate({ENABLED: GateSetting(value)}, signed_in=True), Off)


def test_blockers_do_not_depend_on_enabled() -> None:
    settings = {ECI: GateSetting(True, "user", USER_FILE)}
    assert [r.setting for r in blockers(settings, signed_in=True)] == [ECI]
