"""The web UI in Debian's Chromium, against the cluster tests/tests/web_ui.rs started: a run
submitted through the API is watched, approved and applied in the browser (a viewer's runs list
updating by itself), its state version
rolled back from the workspace page; a viewer sees no Approve button and a forged approval is
refused; cross-site requests with the session cookie are refused; the plan module renders nested
values, a forced replacement and drift as `tofu show` does. Every page is screenshot."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from conftest import log_in

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
MODULE = """
variable "who" {
  type = string
}
variable "password" {
  type      = string
  sensitive = true
}
resource "terraform_data" "hello" {
  input = var.who
  provisioner "local-exec" {
    command = "echo one; echo two; echo three"
  }
}
resource "terraform_data" "secret" {
  input = "${var.who}:${var.password}"
}
output "greeting" {
  value = "hello ${var.who}"
}
"""
APPLY_S = 90_000


def submit(api, workspace, who, auto_approve=False):
    digest = api.bundle({"main.tf": MODULE})
    status, run = api.call(
        "POST",
        "/api/v1/runs",
        {
            "workspace": workspace,
            "bundle_digest": digest,
            "variables": {"who": who, "password": "hunter2-web"},
            "auto_approve": auto_approve,
            "commit": "abc1234",
            "tags": {"suite": "browser"},
        },
    )
    assert status == 201, run
    return run["id"]


def console_errors(page):
    """Collects the page's console errors (a CSP violation is one)."""
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


def test_a_bad_token_is_refused_on_the_login_page(browser, url, shots):
    context = browser.new_context(base_url=url)
    page = context.new_page()
    response = page.goto("/")
    assert page.url.endswith("/ui/login"), page.url
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid user token")
    page.screenshot(path=shots / "login.png", full_page=True)
    assert not [c for c in context.cookies() if c["name"] == "tofuflow_session"]
    context.close()


def approve_in_browser(browser, url, tokens, shots, run_id):
    """The approver's page: live log, plan diff, Approve; then the apply and its outputs."""
    context, page = log_in(browser, url, tokens["approver"])
    errors = console_errors(page)
    cookie = next(c for c in context.cookies() if c["name"] == "tofuflow_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert tokens["approver"] not in cookie["value"]
    page.goto("/ui/#/runs")
    expect(page.locator("table.runs")).to_contain_text(run_id)
    expect(page.get_by_role("link", name="Audit")).to_be_hidden()
    page.screenshot(path=shots / "runs.png", full_page=True)
    page.get_by_role("link", name=run_id).click()
    expect(page.locator("#run-state")).to_have_text("awaiting_approval", timeout=APPLY_S)
    expect(page.locator("#log")).to_contain_text("plan (attempt 1)")
    expect(page.locator("#log")).to_contain_text("terraform_data.hello: Plan to update")
    hello = page.locator('.change[data-address="terraform_data.hello"]')
    expect(hello).to_contain_text("# terraform_data.hello will be updated in-place")
    expect(hello).to_contain_text('~ input = "first" -> "second"')
    expect(hello).to_contain_text('~ output = "first" -> (known after apply)')
    secret = page.locator('.change[data-address="terraform_data.secret"]')
    expect(secret).to_contain_text("~ input = (sensitive value)")
    expect(secret).to_contain_text("~ output = (sensitive value) -> (known after apply)")
    expect(page.locator(".plan")).not_to_contain_text("hunter2")
    expect(page.locator(".plan")).to_contain_text('~ greeting = "hello second"')
    expect(page.locator(".plan .summary")).to_have_text(
        "Plan: 0 to add, 2 to change, 0 to destroy."
    )
    page.screenshot(path=shots / "run-awaiting-approval.png", full_page=True)
    page.get_by_placeholder("reason (recorded)").fill("looks right")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#run-state")).to_have_text("applied", timeout=APPLY_S)
    expect(page.locator("#log")).to_contain_text("apply (attempt 1)")
    expect(page.locator("#log")).to_contain_text("terraform_data.hello: Modifications complete")
    expect(page.locator("#log")).to_contain_text("Apply complete! Resources: 0 added, 2 changed")
    expect(page.locator("#outputs")).to_contain_text('"hello second"')
    expect(page.locator("table.timeline")).to_contain_text("looks right")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    page.screenshot(path=shots / "run-applied.png", full_page=True)
    assert not errors, errors
    context.close()


def viewer_cannot_approve(browser, url, tokens, shots, run_id):
    """The viewer sees the run but no Approve button; a forged approval is refused."""
    context, page = log_in(browser, url, tokens["viewer"])
    page.goto(f"/ui/#/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_text("awaiting_approval", timeout=APPLY_S)
    expect(page.locator(".plan")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    page.screenshot(path=shots / "run-as-viewer.png", full_page=True)
    forged = context.request.post(
        f"{url}/api/v1/runs/{run_id}/approve",
        headers={"Origin": url, "Content-Type": "application/json"},
        data="{}",
    )
    assert forged.status == 403, forged.text()
    assert "vera" in forged.json()["detail"]
    return context, page


def watch_runs_list(page, workspace, run_id):
    """The runs list filtered to the workspace and state, left open to watch it refresh."""
    page.goto("/ui/#/runs")
    page.get_by_label("workspace").fill(workspace)
    page.get_by_label("state").select_option("awaiting_approval")
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(run_id)
    page.get_by_label("state").select_option("")
    expect(rows).to_have_count(2)
    return rows.filter(has_text=run_id).locator(".badge")


def roll_back_in_browser(browser, url, tokens, admin_api, shots, workspace, first, second):
    """The admin's workspace page: versions, rollback, comparison, the lock; agents, audit."""
    context, page = log_in(browser, url, tokens["admin"])
    errors = console_errors(page)
    page.goto(f"/ui/#/workspaces/{workspace.replace('/', '%2F')}")
    versions = page.locator("table.versions tbody tr")
    expect(versions.first).to_contain_text(second)
    expect(page.locator("table.versions")).to_contain_text(first)
    expect(page.locator(".unlocked")).to_have_text("not locked")
    page.screenshot(path=shots / "workspace.png", full_page=True)
    current = int(versions.first.locator("td").first.inner_text())
    page.get_by_label("roll back to version").fill(str(current - 1))
    page.get_by_label("reason").fill("the second run was wrong")
    page.get_by_role("button", name="Roll back").click()
    expect(page.get_by_role("status")).to_contain_text(f"version {current + 1} is current")
    expect(versions.first.locator("td").first).to_have_text(str(current + 1))
    expect(page.get_by_text("the second run was wrong")).to_be_visible()
    page.get_by_role("button", name="Compare").click()
    diff = page.locator("#state-diff")
    expect(diff).to_contain_text(f"version {current} → version {current + 1}")
    expect(diff).to_contain_text("# terraform_data.hello changed")
    # terraform_data keeps its input in state as a typed value, as OpenTofu does: shown nested.
    expect(diff).to_contain_text("~ input = {")
    expect(diff).to_contain_text('~ value = "second" -> "first"')
    expect(diff).to_contain_text("# (1 unchanged attribute hidden)")
    page.screenshot(path=shots / "workspace-rolled-back.png", full_page=True)
    # The rollback left the state behind the configuration last applied: a drift check finds it.
    drift = page.locator("#drift")
    expect(drift).to_contain_text("unchecked")
    page.get_by_role("button", name="Check for drift").click()
    expect(page.get_by_role("status")).to_contain_text("drift check")
    expect(drift.locator("[data-state=drifted]")).to_be_visible(timeout=60_000)
    expect(drift).to_contain_text("since")
    page.screenshot(path=shots / "workspace-drifted.png", full_page=True)
    state = f"/api/v1/workspaces/{workspace.replace('/', '%2F')}/state"
    assert admin_api.call("POST", f"{state}/lock", {"reason": "maintenance"})[0] == 200
    page.reload()
    expect(page.locator(".locked")).to_contain_text("locked by tester")
    expect(page.locator(".locked")).to_contain_text("maintenance")
    assert admin_api.call("POST", f"{state}/unlock", {})[0] == 200
    page.goto("/ui/#/agents")
    expect(page.locator("table.agents tbody tr")).to_have_count(1)
    page.screenshot(path=shots / "agents.png", full_page=True)
    page.goto("/ui/#/audit")
    expect(page.locator("table.audit")).to_contain_text("run_approved")
    expect(page.locator("#audit-verify")).to_contain_text("chain verified")
    page.screenshot(path=shots / "audit.png", full_page=True)
    assert not errors, errors
    context.close()


def test_a_run_submitted_through_the_api_is_approved_applied_and_rolled_back(
    browser, url, tokens, admin_api, shots
):
    workspace = f"web/demo-{uuid.uuid4().hex[:8]}"
    first = submit(admin_api, workspace, "first", auto_approve=True)
    second = submit(admin_api, workspace, "second")
    viewer, viewer_page = viewer_cannot_approve(browser, url, tokens, shots, second)
    badge = watch_runs_list(viewer_page, workspace, second)
    expect(badge).to_have_text("awaiting_approval")
    approve_in_browser(browser, url, tokens, shots, second)
    expect(badge).to_have_text("applied", timeout=10_000)
    viewer.close()
    roll_back_in_browser(browser, url, tokens, admin_api, shots, workspace, first, second)


@pytest.fixture
def admin_context(browser, url, tokens):
    context, _ = log_in(browser, url, tokens["admin"])
    yield context
    context.close()


def test_cookie_requests_from_another_site_are_refused(admin_context, url):
    workspace = f"web/csrf-{uuid.uuid4().hex[:8]}"
    lock = f"{url}/api/v1/workspaces/{workspace.replace('/', '%2F')}/state/lock"
    csrf = admin_context.request.post(
        lock,
        headers={"Origin": "https://evil.example", "Content-Type": "application/json"},
        data="{}",
    )
    assert csrf.status == 403, csrf.text()
    assert "evil.example" in csrf.json()["detail"]
    cross = admin_context.request.get(f"{url}/api/v1/me", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status == 403, cross.text()
    state = admin_context.request.get(lock.rsplit("/", 1)[0]).json()
    assert state["lock_owner"] == "", "the refused lock was not taken"
    same = admin_context.request.get(f"{url}/api/v1/me", headers={"Sec-Fetch-Site": "same-origin"})
    assert same.status == 200 and same.json()["name"] == "tester"


def test_logging_out_ends_the_session(admin_context, url):
    page = admin_context.new_page()
    page.goto("/ui/#/runs")
    kept = admin_context.cookies()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    assert re.search(r"/ui/login$", page.url)
    assert not admin_context.cookies(), "the cookie is removed"
    admin_context.add_cookies(kept)
    me = admin_context.request.get(f"{url}/api/v1/me")
    assert me.status == 401, "the server forgot the session"


NET = """
variable "name" {
  type = string
}
resource "terraform_data" "net" {
  input = "subnet-${var.name}"
}
output "subnet" {
  value = terraform_data.net.output
}
"""
APP = """
variable "subnet" {
  type = string
}
resource "terraform_data" "app" {
  input = var.subnet
}
"""


def test_a_workflow_run_is_drawn_approved_as_a_whole_and_followed(
    browser, url, tokens, admin_api, shots
):
    prefix = f"web/wf-{uuid.uuid4().hex[:8]}"
    definition = f"""
workflow {{
  approval = "once"
}}
stack "net" {{
  source    = "./net"
  workspace = "{prefix}/net"
  inputs    = {{ name = "a" }}
}}
stack "app" {{
  source    = "./app"
  workspace = "{prefix}/app"
  inputs    = {{ subnet = stack.net.outputs.subnet }}
}}
"""
    bundles = {
        "./net": admin_api.bundle({"main.tf": NET}),
        "./app": admin_api.bundle({"main.tf": APP}),
    }
    status, w = admin_api.call(
        "POST",
        "/api/v1/workflow-runs",
        {"definition": definition, "file_name": "web.hcl", "bundles": bundles},
    )
    assert status == 200, w
    assert w["state"] == "awaiting_approval", w
    # The viewer sees the DAG but no button.
    context, page = log_in(browser, url, tokens["viewer"])
    page.goto(f"/ui/#/workflows/{w['id']}")
    expect(page.locator(".node")).to_have_count(2)
    expect(page.locator(".dag-edges line")).to_have_count(1)
    expect(page.get_by_role("button", name="Approve workflow")).to_have_count(0)
    context.close()
    # The approver approves it as a whole and watches it finish.
    context, page = log_in(browser, url, tokens["approver"])
    errors = console_errors(page)
    page.goto("/ui/#/workflows")
    page.get_by_role("link", name=w["id"]).click()
    expect(page.locator('.node[data-key="app"]')).to_contain_text("not started")
    page.screenshot(path=shots / "workflow-awaiting-approval.png", full_page=True)
    page.get_by_role("button", name="Approve workflow").click()
    expect(page.locator('.node[data-key="app"]')).to_have_attribute(
        "data-state", "succeeded", timeout=APPLY_S
    )
    expect(page.locator('.node[data-key="net"]')).to_contain_text("(applied)")
    expect(page.locator("#workflow-reason")).to_contain_text("2 succeeded, 0 failed")
    page.screenshot(path=shots / "workflow-succeeded.png", full_page=True)
    assert not errors, errors
    context.close()


NESTED_PLAN = {
    "summary": {"add": 0, "change": 0, "destroy": 1},
    "changes": {
        "resource_drift": [
            {
                "address": "terraform_data.gpu",
                "type": "terraform_data",
                "name": "gpu",
                "change": {
                    "actions": ["update"],
                    "before": {"input": {"count": 2}},
                    "after": {"input": {"count": 3}},
                },
            }
        ],
        "resource_changes": [
            {
                "address": "terraform_data.gpu",
                "type": "terraform_data",
                "name": "gpu",
                "change": {
                    "actions": ["delete", "create"],
                    "before": {
                        "id": "x1",
                        "input": {
                            "count": 3,
                            "tags": {"env": "prod", "team": "ml"},
                            "zone": "eu-1",
                            "token": "(sensitive)",
                        },
                    },
                    "after": {
                        "input": {
                            "count": 2,
                            "tags": {"env": "prod", "team": "vision"},
                            "zone": "eu-2",
                            "token": "(sensitive)",
                        },
                    },
                    "after_unknown": {"id": True, "input": {}},
                    "replace_paths": [["input", "zone"]],
                },
            }
        ],
    },
}


def test_the_plan_diff_nests_maps_and_blocks_like_tofu_show(browser, url, tokens, shots):
    """The page's own plan module, in Chromium, on a plan with nested values, a replacement
    forced by one attribute and drift: each level attribute by attribute, as `tofu show`."""
    context, page = log_in(browser, url, tokens["viewer"])
    page.goto("/ui/#/runs")
    text = page.evaluate(
        """async (plan) => {
            const { renderPlan } = await import("/ui/assets/plan.js");
            const node = renderPlan(plan);
            document.body.append(node);
            return node.innerText;
        }""",
        NESTED_PLAN,
    )
    lines = [line.rstrip() for line in text.splitlines()]
    expected = [
        "# terraform_data.gpu must be replaced",
        '-/+ resource "terraform_data" "gpu" {',
        '    ~ id = "x1" -> (known after apply)',
        "    ~ input = {",
        "        ~ count = 3 -> 2",
        "        ~ tags = {",
        '            ~ team = "ml" -> "vision"',
        "              # (1 unchanged attribute hidden)",
        "          }",
        "        ~ token = (sensitive value)",
        '        ~ zone = "eu-1" -> "eu-2" # forces replacement',
        "      }",
        "  }",
    ]
    start = lines.index(expected[0])
    assert lines[start : start + len(expected)] == expected, "\n".join(lines)
    assert "Note: Objects have changed outside of OpenTofu" in text
    assert "# terraform_data.gpu has changed" in text
    assert lines.index("# terraform_data.gpu has changed") < start, "drift comes first"
    page.screenshot(path=shots / "plan-nested.png", full_page=True)
    context.close()
