"""Playwright driving Debian's Chromium (never `playwright install`)."""

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
# The flags a root, network-less sandbox needs (see the machine notes).
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread while the browser is open; the
    # tests' own ORM calls are synchronous and safe, so Django's async guard is relaxed for
    # as long as the browser lives, and restored after.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (.ci/run does)")
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield chromium
            chromium.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


# What Chromium prints when a page breaks the Content-Security-Policy (a refused inline script
# or style, a script or frame from an origin not allowed) or carries a malformed
# Permissions-Policy. Every browser test fails on one (docs/deploy.md, "Security").
POLICY_MESSAGES = ("Content Security Policy", "Content-Security-Policy", "Permissions-Policy")


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    refused: list[str] = []
    page.on(
        "console",
        lambda message: refused.append(f"{page.url}: {message.text}")
        if any(words in message.text for words in POLICY_MESSAGES)
        else None,
    )
    yield page
    context.close()
    assert not refused, "the browser refused:\n" + "\n".join(refused)
