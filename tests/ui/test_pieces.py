"""The app's pure pieces: the SSE parser, the toggle's gate, the banners, port parsing."""

from __future__ import annotations

from app.gui.network_page import parse_ports, ports_text
from app.gui.ports_model import address, human_bytes
from app.gui.sse import SseParser
from app.gui.status_banners import banner_specs, daemon_exit_reason
from app.gui.toggle_gate import toggle_gate


def test_sse_parser_joins_data_lines_and_skips_comments() -> None:
    parser = SseParser()
    lines = [": keep-alive", "", "event: port", 'data: {"a":', "data: 1}", "", "data: x", ""]
    events = [e for e in (parser.feed_line(line) for line in lines) if e is not None]
    assert events == [("port", '{"a":\n1}'), ("message", "x")]


def test_toggle_gate_order_lost_locked_blocked_signed_out() -> None:
    assert not toggle_gate(connected=False, status={}, enabled_setting={}).enabled
    locked = toggle_gate(
        connected=True,
        status={"signed_in": True},
        enabled_setting={"value": False, "locked": True, "origin": "/etc/a.json"},
    )
    assert locked.locked and "Locked off by your administrator in /etc/a.json" in locked.reason_text
    blocked = toggle_gate(
        connected=True,
        status={
            "signed_in": False,
            "reasons": [{"setting": "UseWindowsContainers", "problem": "p", "fix": "Switch."}],
        },
        enabled_setting={"value": False},
    )
    assert not blocked.enabled and blocked.needs_sign_in
    assert blocked.reason_text == "Blocked by UseWindowsContainers: Switch."
    out = toggle_gate(connected=True, status={"signed_in": False}, enabled_setting={})
    assert not out.enabled and out.needs_sign_in
    assert toggle_gate(connected=True, status={"signed_in": True}, enabled_setting={}).enabled


def test_banners_for_lost_refused_problems_and_restart() -> None:
    lost = banner_specs(connected=False, lost_message="gone", daemon_said="ECI", status={})
    assert [(b.kind, b.action) for b in lost] == [("error", "start-daemon")]
    assert "The daemon said: ECI" in lost[0].body
    status = {
        "state": "refused",
        "reasons": [{"setting": "EnhancedContainerIsolation", "problem": "on", "fix": "off"}],
        "problems": [{"key": "VmBackend", "message": "bad", "fix": "use netns", "file": "/s"}],
        "restart_pending": True,
    }
    specs = banner_specs(connected=True, lost_message="", daemon_said="", status=status)
    assert [b.kind for b in specs] == ["error", "warning", "info"]
    assert (
        specs[0].fix == "Turn off Enhanced Container Isolation here."
        and specs[1].title == "Problem in /s"
    )
    assert specs[1].body == "VmBackend: bad"


def test_daemon_exit_reason_reads_its_own_lines() -> None:
    log = "2024 daemon INFO x: y\nhostnet daemon: Host networking is refused:\nother\n"
    assert daemon_exit_reason(log) == "Host networking is refused:"


def test_excluded_ports_parse_and_show() -> None:
    assert parse_ports("22, 8000-8010 9000") == ([22, "8000-8010", 9000], "")
    assert parse_ports("") == ([], "")
    _items, error = parse_ports("22, 9-1")
    assert "runs backwards" in error and "22, 8000-8010" in error
    assert "outside 1-65535" in parse_ports("70000")[1]
    assert ports_text([22, "8000-8010"]) == "22, 8000-8010"


def test_addresses_and_sizes() -> None:
    assert address("::1", 80) == "[::1]:80" and address("127.0.0.1", 80) == "127.0.0.1:80"
    assert human_bytes(12) == "12 B" and human_bytes(2048) == "2.0 KB"


def test_a_refusal_the_app_can_fix_gets_a_button_and_a_locked_one_does_not() -> None:
    from app.gui.status_banners import TURN_OFF

    reasons = [
        {"setting": "EnhancedContainerIsolation", "source": "user", "problem": "p", "fix": "cli"},
        {"setting": "UseWindowsContainers", "source": "admin-locked", "problem": "q", "fix": "ask"},
        {"setting": "SignInRequired", "source": "admin-default", "problem": "r", "fix": "login"},
    ]
    specs = banner_specs(
        connected=True,
        lost_message="",
        daemon_said="",
        status={"state": "refused", "reasons": reasons},
    )
    assert [(s.action, s.fix) for s in specs] == [
        ("turn-off:EnhancedContainerIsolation", f"{TURN_OFF['EnhancedContainerIsolation']} here."),
        ("", "ask"),
        ("sign-in", "Sign in here."),
    ]


def test_general_says_the_state_once() -> None:
    from app.gui.general_page import STATE_WORDS, state_detail

    assert state_detail("on", "Host networking is on.") == ""
    assert state_detail("on", "Host networking is on. 3 ports.") == "3 ports."
    off = state_detail("off", "Host networking is off. Turn it on with `hostnet settings set ...`")
    assert off == "Turn it on in Resources > Network."
    for state, words in STATE_WORDS.items():
        assert words not in state_detail(state, f"{words}.")
