"""Debian's Chromium under Playwright, kept off the network: shared by the browser tests and
`scripts/screenshots`. Never a downloaded browser (`playwright install` is not used)."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from playwright.async_api import Browser, BrowserContext, Playwright, Route

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


async def launch(playwright: Playwright) -> Browser:
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def avatar_svg(url: str) -> str:
    """A stand-in for a Slack avatar: a square in a colour drawn from the URL."""
    colour = hashlib.sha256(url.encode()).hexdigest()[:6]
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 8 8">'
        f'<rect width="8" height="8" fill="#{colour}"/>'
        '<circle cx="4" cy="3" r="1.6" fill="#fff"/><rect x="1.6" y="5.2" width="4.8" height="3"'
        ' rx="1.5" fill="#fff"/></svg>'
    )


async def keep_local(context: BrowserContext) -> None:
    """Let the pages reach this machine only: avatars (the fake Slack's point at gravatar.com)
    are answered with a drawn stand-in, and every other outside request fails at once."""

    async def route(route: Route) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if host in LOCAL_HOSTS:
            await route.continue_()
        elif host.endswith("gravatar.com"):
            await route.fulfill(body=avatar_svg(url), content_type="image/svg+xml")
        else:
            await route.abort()

    await context.route("**/*", route)
