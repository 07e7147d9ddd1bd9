"""The host side: CLI, daemon and its control API, settings, sign-in, Qt windows and tray."""
