"""Product policy: the policy gate (may host networking run with these settings?) and the
sign-in rule. Plain functions of plain values: they read no files and import nothing else
from ``app``, so the settings, the daemon, the CLI and the GUI all build on them."""
