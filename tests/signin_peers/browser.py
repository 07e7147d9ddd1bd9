"""A person at a browser, for the OIDC tests: follows redirects and fills in the provider's own
login, consent and device pages over real HTTP (the pages of ``oidc-provider``'s dev mode)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    form_id: str = ""


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                Form(a.get("action", ""), a.get("method", "get").lower(), {}, a.get("id", ""))
            )
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1].fields[a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])


class Person:
    """Uses one cookie jar, like one browser profile."""

    def __init__(self, login: str = "alice", password: str = "correct") -> None:
        self.login = login
        self.password = password
        self.http = httpx.Client(follow_redirects=False, timeout=10, trust_env=False)
        self.pages: list[str] = []

    def close(self) -> None:
        self.http.close()

    def _walk(self, response: httpx.Response, stop_prefix: str) -> httpx.Response:
        """Follow redirects until a page, or a redirect to ``stop_prefix`` (the app's loopback)."""
        for _ in range(20):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if stop_prefix and target.startswith(stop_prefix):
                    return self.http.get(target)  # the browser lands on the loopback redirect
                response = self.http.get(target)
                continue
            return response
        raise RuntimeError("too many redirects")

    def _submit(self, page: httpx.Response, extra: dict[str, str], stop: str) -> httpx.Response:
        parser = _Forms()
        parser.feed(page.text)
        if not parser.forms:
            raise RuntimeError(f"no form on {page.url}: {page.text[:300]}")
        form = parser.forms[0]
        data = {**form.fields, **extra}
        action = urljoin(str(page.url), form.action)
        return self._walk(self.http.post(action, data=data), stop)

    def authorize(self, url: str, loopback: str, *, consent: bool = True) -> httpx.Response:
        """Open the authorization URL, log in, consent (or abort); land on the loopback page."""
        page = self._walk(self.http.get(url), loopback)
        for _ in range(4):
            if str(page.url).startswith(loopback):
                return page
            self.pages.append(page.text)
            if 'name="password"' in page.text:
                page = self._submit(
                    page, {"login": self.login, "password": self.password}, loopback
                )
            elif "/confirm" in page.text or "Authorize" in page.text:
                if not consent:
                    parser = _Forms()
                    parser.feed(page.text)
                    abort = next(link for link in parser.links if link.endswith("/abort"))
                    page = self._walk(self.http.get(urljoin(str(page.url), abort)), loopback)
                else:
                    page = self._submit(page, {}, loopback)
            else:
                return page
        return page

    def approve_device(self, verification_uri: str, user_code: str, *, approve: bool = True) -> str:
        """Enter the user code, log in, consent; returns the provider's final page text."""
        page = self._walk(self.http.get(verification_uri), "")
        page = self._submit(page, {"user_code": user_code}, "")
        for _ in range(6):
            self.pages.append(page.text)
            if 'name="password"' in page.text:
                page = self._submit(page, {"login": self.login, "password": self.password}, "")
            elif "op.deviceConfirmForm" in page.text:
                page = self._submit(page, {} if approve else {"abort": "yes"}, "")
            elif "/confirm" in page.text or "Authorize" in page.text:
                page = self._submit(page, {}, "")
            else:
                return page.text
        return page.text
