"""CORS proven in a real browser (Debian's headless Chromium, driven by Playwright): a page on
one loopback origin signs up against a real Better Auth server, takes its JWT and calls this
API, served on another origin, with fetch. The same page on an origin the API does not allow
is blocked by the browser, and nothing reaches the database."""

import contextlib
import functools
import json
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from cli import PROJECT
from tests.better_auth import better_auth_server
from tests.live_server import live_service

PAGE_DIR = Path(__file__).parent / "browser"


def pages_with_the_frontend(directory: Path) -> Path:
    """tests/browser/ and sdk/frontend.ts bundled for the browser (esbuild, from tsx) beside it."""
    shutil.copytree(PAGE_DIR, directory, dirs_exist_ok=True)
    bundle = ["npx", "--no-install", "esbuild", "sdk/frontend.ts", "--bundle", "--format=esm"]
    subprocess.run([*bundle, f"--outfile={directory / 'frontend.js'}"], cwd=PROJECT, check=True, capture_output=True)
    return directory


@contextlib.contextmanager
def page_origin(directory: Path = PAGE_DIR):
    """A static server for the pages in `directory` on a loopback port of its own."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def world():
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: apt-get install chromium"
    with contextlib.ExitStack() as stack:
        pages = pages_with_the_frontend(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        allowed, other = stack.enter_context(page_origin(pages)), stack.enter_context(page_origin(pages))
        auth = stack.enter_context(better_auth_server(trusted_origins=(allowed, other)))
        trust = {"JWT_JWKS_URL": auth.jwks_url, "JWT_ISSUER": auth.base_url, "JWT_AUDIENCE": auth.base_url}
        api = stack.enter_context(live_service(CORS_ORIGINS=allowed, RATE_LIMIT="off", **trust))
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        stack.callback(browser.close)
        yield {"browser": browser, "auth": auth, "api": api, "allowed": allowed, "other": other}


def run_page(world, origin: str) -> dict:
    page = world["browser"].new_page()
    query = urllib.parse.urlencode({"auth": world["auth"].base_url, "api": world["api"].base_url})
    page.goto(f"{origin}/page.html?{query}")
    result = page.evaluate("window.result")
    page.close()
    return result


def tasks_seen_by_the_api(world, result: dict) -> list:
    request = urllib.request.Request(
        f"{world['api'].base_url}/api/{result['userId']}/tasks", headers={"Authorization": f"Bearer {result['token']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["items"]


def test_a_page_on_the_allowed_origin_lists_creates_and_completes(world):
    result = run_page(world, world["allowed"])
    assert "blocked" not in result, result
    assert result["created"] == 201
    assert result["location"].startswith(f"/api/{result['userId']}/tasks/"), "Location is exposed to the page"
    assert result["completed"] is True
    assert result["requestId"], "X-Request-ID is exposed to the page"
    assert result["titles"] == ["From the browser"]


def test_the_same_page_on_another_origin_is_blocked_and_changes_nothing(world):
    result = run_page(world, world["other"])
    assert "Failed to fetch" in result.get("blocked", ""), result
    assert tasks_seen_by_the_api(world, result) == []


def open_live_page(world, context, *, sign_up: bool):
    page = context.new_page()
    query = {"auth": world["auth"].base_url, "api": world["api"].base_url, "sign-up": "yes" if sign_up else "no"}
    page.goto(f"{world['allowed']}/live.html?{urllib.parse.urlencode(query)}")
    user_id = page.evaluate("window.ready")
    page.wait_for_function("window.events >= 1", timeout=15_000)  # the first event: up to date
    return page, user_id


def test_a_change_made_in_one_tab_appears_in_the_users_other_tab_and_nowhere_else(world):
    """Two tabs of one Better Auth user, each kept by watch() over the event stream; a third
    tab, another user's, sees none of it."""
    mine, theirs = world["browser"].new_context(), world["browser"].new_context()
    try:
        first, user_id = open_live_page(world, mine, sign_up=True)
        second, same_user = open_live_page(world, mine, sign_up=False)  # the session cookie is shared
        stranger, stranger_id = open_live_page(world, theirs, sign_up=True)
        assert same_user == user_id != stranger_id
        assert first.evaluate("window.create('Made in the first tab')") == 201
        second.wait_for_function("window.titles.includes('Made in the first tab')", timeout=15_000)
        first.wait_for_function("window.titles.includes('Made in the first tab')", timeout=15_000)
        stranger.wait_for_timeout(1_000)
        assert stranger.evaluate("window.titles") == [] and stranger.evaluate("window.events") == 1
    finally:
        mine.close()
        theirs.close()
