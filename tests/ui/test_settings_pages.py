"""Every setting where a Docker Desktop user looks for it (General, Resources > Advanced and
Network, Account), against a real daemon on a real namespace VM (offscreen Qt)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit

from app.control_client import ControlError
from app.gui.controller import Controller
from app.paths import Paths
from app.settings.vm_options import option_error
from tests.integration.daemon_fixture import RunningDaemon
from tests.integration.vm_helpers import free_port, host_answer, start_server
from tests.ui.app_harness import pump_until
from tests.ui.conftest import needs_root

pytestmark = [needs_root, pytest.mark.root]

DaemonFactory = Callable[..., RunningDaemon]
AppFactory = Callable[[], Controller]


def setting(daemon: RunningDaemon, key: str) -> Any:
    return daemon.client.get("/v1/settings")["settings"][key]["value"]


def banner_text(app: Controller) -> str:
    return "\n".join(app.window.banner_texts())


@pytest.fixture
def put_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every PUT the app sends, recorded on the way to the real daemon."""
    from app.control_client import ControlClient

    calls: list[Any] = []
    real = ControlClient.call

    def recording(self: ControlClient, method: str, path: str, body: Any = None) -> Any:
        if method == "PUT":
            calls.append(body)
        return real(self, method, path, body)

    monkeypatch.setattr(ControlClient, "call", recording)
    yield calls


def type_into(qtbot: Any, line: QLineEdit, text: str) -> None:
    line.setFocus()
    line.selectAll()
    qtbot.keyClick(line, Qt.Key.Key_Backspace)
    qtbot.keyClicks(line, text)


def click_apply(qtbot: Any, window: Any) -> None:
    """Click "Apply & restart" and wait until the footer says the change was applied."""
    qtbot.mouseClick(window.apply_button, Qt.MouseButton.LeftButton)
    pump_until(lambda: window.footer_message.text().startswith("Applied"), 10, "apply")


def forwarded(port: int) -> bool:
    try:
        return host_answer("tcp", "127.0.0.1", port, b"hi") == b"echo:hi"
    except OSError:
        return False


def test_eci_in_general_refuses_at_once_and_turning_it_off_resumes(
    daemon_factory: DaemonFactory,
    app_factory: AppFactory,
    signed_in: object,
    qtbot: Any,
    put_calls: list[Any],
) -> None:
    daemon = daemon_factory({"HostNetworkingEnabled": True})
    app = app_factory()
    window = app.window
    window.show_page("general")
    general = window.general
    pump_until(lambda: app.link.state == "on", 15, "host networking on")
    assert general.headline.text() == "Host networking is on"
    assert "Host networking is on" not in general.message.text()  # said once, not twice
    port = free_port()
    server = start_server(daemon.vm_prefix, "tcp", "127.0.0.1", port)
    try:
        pump_until(lambda: forwarded(port), 10, "the VM port on the host")
        eci = general.switches["EnhancedContainerIsolation"]
        qtbot.mouseClick(eci, Qt.MouseButton.LeftButton)
        pump_until(lambda: app.link.state == "refused", 10, "the refusal")
        assert put_calls == [{"EnhancedContainerIsolation": True}]  # once, through the API
        assert setting(daemon, "EnhancedContainerIsolation") is True
        pump_until(lambda: "refused: EnhancedContainerIsolation" in banner_text(app), 5, "banner")
        assert general.headline.text() == "Host networking is refused"
        pump_until(lambda: not forwarded(port), 10, "forwarding to stop")

        qtbot.mouseClick(eci, Qt.MouseButton.LeftButton)
        pump_until(lambda: app.link.state == "on", 15, "forwarding to resume")
        assert put_calls[-1] == {"EnhancedContainerIsolation": False} and len(put_calls) == 2
        pump_until(lambda: forwarded(port), 15, "the VM port on the host again")
        assert banner_text(app) == ""
    finally:
        server.kill()


def test_a_switch_shows_what_was_asked_until_the_daemon_answers(
    daemon_factory: DaemonFactory, app_factory: AppFactory, qtbot: Any, put_calls: list[Any]
) -> None:
    """The daemon may take seconds to stop forwarding; events that come meanwhile (a status,
    a settings answer read before the change) must not put the switch back, or the next click
    asks for the same value again. That ordering cannot be made to happen on demand, so the
    stale settings are handed to the link as the event stream would hand them."""
    daemon = daemon_factory()
    app = app_factory()
    app.window.show_page("general")
    eci = app.window.general.switches["EnhancedContainerIsolation"]
    before = json.loads(json.dumps(app.link.settings))  # what the daemon said before the click
    assert not eci.isChecked()
    qtbot.mouseClick(eci, Qt.MouseButton.LeftButton)
    app.link._on_event("settings", before)  # a stale answer, before the PUT's own
    assert eci.isChecked() and app.link.value("EnhancedContainerIsolation") is True
    pump_until(lambda: setting(daemon, "EnhancedContainerIsolation") is True, 10, "the change")
    pump_until(lambda: not app.link._asked, 10, "the answer")
    assert eci.isChecked()
    app.link._on_event("settings", before)  # an answer that arrives after a newer one
    assert eci.isChecked() and app.link.settings["revision"] > before["revision"]
    qtbot.mouseClick(eci, Qt.MouseButton.LeftButton)
    pump_until(lambda: setting(daemon, "EnhancedContainerIsolation") is False, 10, "turned off")
    assert put_calls == [
        {"EnhancedContainerIsolation": True},
        {"EnhancedContainerIsolation": False},
    ]


def test_a_refused_change_shows_the_daemons_value_again(
    daemon_factory: DaemonFactory, app_factory: AppFactory
) -> None:
    daemon_factory()
    app = app_factory()
    refused: list[Exception] = []
    app.link.put_settings(
        {"HostNetworkingUdpIdleTimeoutSeconds": "soon"},
        on_done=lambda _result: None,
        on_error=refused.append,
    )
    assert app.link.value("HostNetworkingUdpIdleTimeoutSeconds") == "soon"  # asked, not answered
    pump_until(lambda: bool(refused), 10, "the refusal")
    assert isinstance(refused[0], ControlError) and "HostNetworkingUdpIdleTimeoutSeconds" in str(
        refused[0]
    )
    assert isinstance(app.link.value("HostNetworkingUdpIdleTimeoutSeconds"), (int, float))


def test_windows_containers_in_general_say_linux_only(
    daemon_factory: DaemonFactory, app_factory: AppFactory, signed_in: object, qtbot: Any
) -> None:
    daemon = daemon_factory({"HostNetworkingEnabled": True})
    app = app_factory()
    general = app.window.general
    app.window.show_page("general")
    assert general.linux_only.isHidden()
    qtbot.mouseClick(general.switches["UseWindowsContainers"], Qt.MouseButton.LeftButton)
    pump_until(lambda: app.link.state == "refused", 10, "the refusal")
    assert setting(daemon, "UseWindowsContainers") is True
    pump_until(lambda: not general.linux_only.isHidden(), 5, "the Linux-only note")
    assert "hostnet runs Linux containers only" in general.linux_only.text()
    pump_until(lambda: "Linux containers only" in app.last_notice, 5, "the notice")
    assert app.menu.windows_action.isChecked()  # the tray's item says the same


def test_advanced_refuses_bad_options_with_the_cli_words_and_cancel_sends_nothing(
    daemon_factory: DaemonFactory, app_factory: AppFactory, qtbot: Any, put_calls: list[Any]
) -> None:
    daemon = daemon_factory()
    app = app_factory()
    window = app.window
    window.show_page("advanced")
    page = window.advanced
    assert window.current_page() == "advanced"
    titles = [page.backend.itemText(i) for i in range(page.backend.count())]
    assert titles == ["Network namespace", "QEMU micro-VM", "Existing VM"]
    assert page.chosen() == "netns" and page.no_options.isVisibleTo(window)

    page.backend.setCurrentIndex(page.backend.findData("qemu"))
    memory = next(e for e in page.editors if e.name == "memory_mib")
    assert isinstance(memory.widget, QLineEdit)
    type_into(qtbot, memory.widget, "lots")
    assert memory.error_label.text() == option_error("qemu", "memory_mib", "lots")
    assert memory.error_label.text() == 'memory_mib="lots" is not a whole number'
    assert not window.apply_button.isEnabled()
    type_into(qtbot, memory.widget, "64")
    assert memory.error_label.text() == "memory_mib=64 is too small: it must be at least 128"
    type_into(qtbot, memory.widget, "2048")
    assert memory.error == ""
    assert page.changes() == {"VmBackend": "qemu", "VmOptions": {"memory_mib": 2048}}
    assert page.restart_marker.isVisibleTo(window)
    assert window.apply_button.isEnabled()

    page.backend.setCurrentIndex(page.backend.findData("attach"))
    transport = next(e for e in page.editors if e.name == "transport")
    assert isinstance(transport.widget, QLineEdit)
    type_into(qtbot, transport.widget, "ssh://vm")
    assert "is not valid: where the agent listens" in transport.error_label.text()
    type_into(qtbot, transport.widget, "tcp:127.0.0.1:5123")
    assert page.options_error.text() == "the attach backend needs secret_file"
    assert not window.apply_button.isEnabled()

    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert page.chosen() == "netns" and page.changes() == {}
    assert put_calls == []
    assert setting(daemon, "VmBackend") == "netns"

    # the control API refuses what the page refuses, with the same words
    with pytest.raises(ControlError) as caught:
        daemon.client.call("PUT", "/v1/settings", {"VmBackend": "qemu", "VmOptions": {"cpus": 0}})
    assert "cpus=0 is too small: it must be at least 1" in str(caught.value)


def test_an_admin_locked_backend_shows_disabled_with_its_reason(
    daemon_factory: DaemonFactory, app_factory: AppFactory, home: Paths
) -> None:
    admin = {"configurationFileVersion": 2, "VmBackend": {"locked": True, "value": "netns"}}
    daemon_factory(admin=admin)
    app = app_factory()
    page = app.window.advanced
    reason = f"Locked {json.dumps('netns')} by your administrator in "
    assert not page.backend.isEnabled()
    assert page.backend.toolTip().startswith(reason)
    assert not page.backend_lock.isHidden()
    assert page.backend_lock.accessibleName().startswith(reason)


def test_udp_idle_timeout_is_checked_then_applied_once(
    daemon_factory: DaemonFactory, app_factory: AppFactory, qtbot: Any, put_calls: list[Any]
) -> None:
    daemon = daemon_factory()
    app = app_factory()
    window = app.window
    window.show_page("network")
    field, engine = window.network.fields.fields[:2]
    assert field.key == "HostNetworkingUdpIdleTimeoutSeconds"
    assert engine.key == "ContainerEngineEnabled"  # later settings join the same place
    assert isinstance(engine.editor, QCheckBox) and engine.editor.isEnabled()
    assert not engine.editor.isChecked()
    assert isinstance(field.editor, QLineEdit) and field.editor.text() == "60"
    type_into(qtbot, field.editor, "0")
    assert field.error_label.text() == "0 is too small: it must be more than 0."
    assert not window.apply_button.isEnabled()
    type_into(qtbot, field.editor, "abc")
    assert field.error_label.text() == "'abc' is not a number."
    type_into(qtbot, field.editor, "5")
    assert window.apply_button.isEnabled()
    click_apply(qtbot, window)
    assert put_calls == [{"HostNetworkingUdpIdleTimeoutSeconds": 5}]
    assert setting(daemon, "HostNetworkingUdpIdleTimeoutSeconds") == 5
    assert field.editor.text() == "5" and not window.apply_button.isEnabled()


def test_the_data_path_is_chosen_from_a_list_and_applied_once(
    daemon_factory: DaemonFactory, app_factory: AppFactory, qtbot: Any, put_calls: list[Any]
) -> None:
    daemon = daemon_factory()
    app = app_factory()
    window = app.window
    window.show_page("network")
    [field] = [f for f in window.network.fields.fields if f.key == "HostNetworkingDataPath"]
    assert isinstance(field.editor, QComboBox) and field.editor.isEnabled()
    options = [field.editor.itemData(i) for i in range(field.editor.count())]
    assert options == ["auto", "kernel", "proxy"]
    assert field.editor.currentData() == "auto"
    assert not window.apply_button.isEnabled()
    field.editor.setCurrentIndex(options.index("proxy"))
    assert window.apply_button.isEnabled()
    click_apply(qtbot, window)
    assert put_calls == [{"HostNetworkingDataPath": "proxy"}]
    assert setting(daemon, "HostNetworkingDataPath") == "proxy"
    pump_until(
        lambda: daemon.client.get("/v1/status")["data_path"]["active"] == "proxy", 10, "proxy"
    )


def test_account_provider_fields_follow_the_provider(
    daemon_factory: DaemonFactory, app_factory: AppFactory, qtbot: Any, put_calls: list[Any]
) -> None:
    daemon = daemon_factory()
    app = app_factory()
    window = app.window
    window.show_page("account")
    page = window.account
    assert isinstance(page.provider.editor, QComboBox)
    assert page.registry.isVisibleTo(window) and not page.issuer.isVisibleTo(window)
    page.provider.editor.setCurrentIndex(page.provider.editor.findData("oidc"))
    assert page.issuer.isVisibleTo(window) and page.client_id.isVisibleTo(window)
    assert not page.registry.isVisibleTo(window)
    issuer, client = page.issuer.editor, page.client_id.editor
    assert isinstance(issuer, QLineEdit) and isinstance(client, QLineEdit)
    type_into(qtbot, issuer, "login.example.com")
    assert page.issuer.error_label.text() == (
        '"login.example.com" does not have the form of https://login.example.com.'
    )
    assert not window.apply_button.isEnabled()
    type_into(qtbot, issuer, "https://login.example.com")
    type_into(qtbot, client, "hostnet-desktop")
    click_apply(qtbot, window)
    assert put_calls == [
        {
            "SignInProvider": "oidc",
            "OidcIssuer": "https://login.example.com",
            "OidcClientId": "hostnet-desktop",
        }
    ]
    assert setting(daemon, "SignInProvider") == "oidc"
    assert setting(daemon, "OidcIssuer") == "https://login.example.com"
