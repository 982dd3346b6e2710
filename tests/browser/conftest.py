"""Fixtures of the browser suite: Debian's Chromium for pytest-playwright, the cluster that
tests/tests/web_ui.rs started (its URL and tokens in the environment), logged-in pages and a
small client of the JSON API for what the test does "through the API"."""

import io
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

CHROMIUM = os.environ.get("TOFUFLOW_CHROMIUM", "/usr/bin/chromium")


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: run this suite through `cargo test -p tofuflow-e2e --test web_ui` "
            "(it starts the cluster) with TOFUFLOW_BROWSER_PYTHON set to this Python"
        )
    return value


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Launches Debian's chromium; fails loudly (never skips) when it is missing."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"NO CHROMIUM at {CHROMIUM}: install Debian's package (apt-get install chromium) "
            "or set TOFUFLOW_CHROMIUM"
        )
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture(scope="session")
def url():
    return env("TOFUFLOW_URL").rstrip("/")


@pytest.fixture(scope="session")
def tokens():
    return {
        "admin": env("TOFUFLOW_ADMIN_TOKEN"),
        "approver": env("TOFUFLOW_APPROVER_TOKEN"),
        "viewer": env("TOFUFLOW_VIEWER_TOKEN"),
    }


@pytest.fixture(scope="session")
def shots():
    d = Path(env("TOFUFLOW_SCREENSHOTS"))
    d.mkdir(parents=True, exist_ok=True)
    return d


class Api:
    """The JSON API with a bearer token, as an integration would call it."""

    def __init__(self, url, token):
        self.url, self.token = url, token

    def call(self, method, path, body=None, ctype="application/json"):
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def bundle(self, files):
        """Uploads a module (name -> text) as a tar.gz bundle; answers its digest."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, text in files.items():
                raw = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(raw), 0o644
                tar.addfile(info, io.BytesIO(raw))
        status, body = self.call("POST", "/api/v1/bundles", buf.getvalue(), "application/gzip")
        assert status == 201, body
        return body["digest"]


@pytest.fixture(scope="session")
def admin_api(url, tokens):
    return Api(url, tokens["admin"])


def log_in(browser, url, token):
    """A new browser context logged in with `token` through the login page."""
    context = browser.new_context(base_url=url)
    page = context.new_page()
    page.goto("/ui/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    return context, page
