"""A headless Chromium (Debian's ``chromium`` package) driven by playwright, logged in to a deployment.

No browser is downloaded: playwright drives the system binary (``executable_path``). Tests that need it
call ``chromium_or_skip()`` first, which skips them, naming what is missing, when the binary or the
playwright package is not installed. Every wait is generous and polls; nothing is timed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.deployment import ADMIN, TOKEN_COOKIE, Deployment

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Generous: a loaded 2-core machine runs the api-server, scheduler, triggerer and the browser at once.
WAIT_MS = 90_000
VIEWPORT = {"width": 1280, "height": 900}


def chromium_or_skip() -> str:
    """The path of the system Chromium; skip the test, saying why, when it or playwright is missing."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("no `chromium` on PATH (Debian: apt-get install --no-install-recommends chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    return path


@contextmanager
def logged_in_page(
    deployment: Deployment, user: str = ADMIN, viewport: dict[str, int] | None = None
) -> Iterator[Page]:
    """A page of a fresh headless browser context that carries ``user``'s token as the UI's cookie.

    The cookie is the one the login form sets (``_token``, scoped to the deployment's base URL); the
    Airflow UI and the Venice page (and the poster images it loads) send it on every request.
    """
    from playwright.sync_api import expect, sync_playwright

    executable = chromium_or_skip()
    expect.set_options(timeout=WAIT_MS)  # every expect() polls this long before it fails
    with sync_playwright() as playwright:
        # As root, playwright adds --no-sandbox by itself; /dev/shm is small in containers.
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--disable-dev-shm-usage"]
        )
        try:
            context = browser.new_context(viewport=viewport or VIEWPORT)
            context.set_default_timeout(WAIT_MS)
            context.set_default_navigation_timeout(WAIT_MS)
            context.add_cookies(
                [{"name": TOKEN_COOKIE, "value": deployment.token(user), "url": f"{deployment.api_url}/"}]
            )
            page = context.new_page()
            yield page
        finally:
            browser.close()


def url(deployment: Deployment, path: str) -> str:
    """The absolute URL of ``path`` (relative to the deployment's base URL)."""
    return f"{deployment.api_url}/{path.lstrip('/')}"


def screenshot(page: Page, folder: Path, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of ``page`` as ``folder/name.png``; return its path."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def wait_until(page: Page, expression: str, arg: Any = None) -> Any:
    """Poll ``expression`` (a JavaScript function of ``arg``) in the page until it is truthy; return it."""
    return page.wait_for_function(expression, arg=arg, timeout=WAIT_MS, polling=250).json_value()
