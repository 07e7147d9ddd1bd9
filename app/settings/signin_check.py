"""The sign-in check the settings store asks before turning host networking on.

Any callable ``(Paths) -> bool`` will do. The default is ``app.signin.state.is_signed_in``,
imported only when first called so the settings code does not depend on sign-in being built
(or importable) to read settings.
"""

from __future__ import annotations

from typing import Protocol

from app.paths import Paths


class SignInCheck(Protocol):
    def __call__(self, paths: Paths, /) -> bool: ...


def app_signin_check(paths: Paths) -> bool:
    """``app.signin.state.is_signed_in``; False when sign-in is not available in this build."""
    try:
        from app.signin.state import is_signed_in
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("app.signin"):
            return False
        raise
    return bool(is_signed_in(paths))
