"""The desktop app: settings window, sign-in dialog and tray, on the daemon's control API.

Everything that talks to the daemon or to a sign-in server runs off the UI thread
(``app.gui.workers``); the event stream (``app.gui.event_stream``) keeps the window and the
tray in step with the daemon's real state.
"""
