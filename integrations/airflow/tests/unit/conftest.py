"""Unit tests run without a network: every request goes to an in-memory coordinator through
``httpx.MockTransport``; the Airflow connection comes from the environment."""

from __future__ import annotations

import json
import os
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="tofuflow-airflow-unit-"))
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW_CONN_TOFUFLOW_DEFAULT"] = json.dumps(
    {"conn_type": "tofuflow", "host": "http://coordinator.test:7701", "password": "tfu_unit"}
)
os.environ["AIRFLOW_CONN_CLOUD"] = json.dumps(
    {"conn_type": "generic", "login": "svc", "password": "cloud-secret-canary-7f3a"}
)

import httpx  # noqa: E402
import pytest  # noqa: E402

from tofuflow_provider.hooks import tofuflow as hookmod  # noqa: E402


class FakeCoordinator:
    """The API endpoints the provider uses, over a dict of runs."""

    def __init__(self):
        self.runs: dict[str, dict] = {}
        self.keys: dict[str, str] = {}
        self.workflow_keys: dict[str, str] = {}
        #: (method, path) of requests whose answer is lost once, after they were handled.
        self.lose_answer_once: set[tuple[str, str]] = set()
        self.requests: list[httpx.Request] = []
        self.fail_next_connects = 0
        self.logs: dict[str, list[str]] = {}
        self.script: dict[str, list] = {}
        self.workflows: dict[str, dict] = {}
        self.uploads: list[bytes] = []

    def add_run(self, state: str, **fields) -> dict:
        rid = f"r{len(self.runs) + 1:04d}"
        run = {
            "id": rid,
            "workspace": "ml/a",
            "kind": "plan_and_apply",
            "state": state,
            "tags": {},
            "error": "",
            "has_changes": True,
            "summary": {"add": 2, "change": 0, "destroy": 0},
            "outputs": {},
            "transitions": [],
        }
        run.update(fields)
        self.runs[rid] = run
        self.logs.setdefault(rid, ["plan line 1", "plan line 2"])
        return run

    def __call__(self, req: httpx.Request) -> httpx.Response:
        answer = self.answer(req)
        if (req.method, req.url.path) in self.lose_answer_once:
            self.lose_answer_once.discard((req.method, req.url.path))
            raise httpx.ReadError("connection reset after the request was handled", request=req)
        return answer

    def answer(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        if self.fail_next_connects > 0:
            self.fail_next_connects -= 1
            raise httpx.ConnectError("connection refused", request=req)
        if req.headers.get("authorization") != "Bearer tfu_unit":
            return problem(401, "no token")
        path, method = req.url.path, req.method
        parts = path.split("/")
        if path == "/api/v1/me":
            return httpx.Response(200, json={"name": "airflow-bot", "roles": ["approver"]})
        if path == "/api/v1/bundles":
            self.uploads.append(req.content)
            digest = f"sha256:{len(self.uploads):03d}"
            return httpx.Response(201, json={"digest": digest, "size": 1, "existed": False})
        if path.startswith("/api/v1/workflow-runs"):
            return self.workflow(req, parts)
        if path == "/api/v1/runs" and method == "POST":
            return self.submit(req)
        if path == "/api/v1/runs":
            return self.list(req)
        run = self.runs.get(parts[4]) if len(parts) > 4 else None
        if run is None:
            return problem(404, "no such run")
        if len(parts) == 5:
            self.advance(run)
            return httpx.Response(200, json=run)
        if path.endswith("/logs/stream"):
            return self.stream(run, req)
        return self.action(run, parts[5], req)

    def advance(self, run: dict) -> None:
        steps = self.script.get(run["id"])
        if steps:
            step = steps.pop(0)
            run.update({"state": step} if isinstance(step, str) else step)

    def submit(self, req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content)
        key = req.headers.get("idempotency-key", "")
        if key and key in self.keys:
            return httpx.Response(201, json=self.runs[self.keys[key]])
        run = self.add_run("queued", workspace=body["workspace"], kind=body["kind"])
        run["tags"] = body["tags"]
        run["variables"] = {
            k: ("(sensitive)" if k in body["sensitive_variables"] else v)
            for k, v in body["variables"].items()
        }
        if key:
            self.keys[key] = run["id"]
        return httpx.Response(201, json=run)

    def list(self, req: httpx.Request) -> httpx.Response:
        want = dict(t.split("=", 1) for t in req.url.params.get_list("tag"))
        runs = [
            r
            for r in reversed(list(self.runs.values()))
            if all(r["tags"].get(k) == v for k, v in want.items())
        ]
        return httpx.Response(200, json={"runs": runs[: int(req.url.params["limit"])]})

    def action(self, run: dict, what: str, req: httpx.Request) -> httpx.Response:
        if what == "logs":
            after = req.url.params.get("after")
            start = int(after) + 1 if after is not None else 0
            lines = [
                {"cursor": str(i), "phase": "plan", "line": text}
                for i, text in enumerate(self.logs[run["id"]])
            ][start:]
            nxt = lines[-1]["cursor"] if lines else after
            return httpx.Response(200, json={"lines": lines, "next": nxt, "complete": False})
        if what == "approve":
            if run["state"] != "awaiting_approval":
                return problem(409, f"run is {run['state']}")
            run["state"] = "approved"
        elif what == "cancel":
            run["state"] = "cancelled"
        else:
            return problem(404, "no such endpoint")
        return httpx.Response(200, json=run)

    def stream(self, run: dict, req: httpx.Request) -> httpx.Response:
        """The SSE log stream: the lines after ``Last-Event-ID``, then ``end`` if the run has
        ended; else the connection closes (as a dropping proxy would). Each connection moves
        the run one step along its script and adds a line."""
        self.advance(run)
        lines = self.logs[run["id"]]
        if run["id"] in self.script:
            lines.append(f"{run['state']} line")
        last = req.headers.get("last-event-id")
        start = int(last) + 1 if last is not None else 0
        out = ""
        for i in range(start, len(lines)):
            data = json.dumps({"cursor": str(i), "phase": "apply", "line": lines[i]})
            out += f"id: {i}\nevent: log\ndata: {data}\n\n"
        if hookmod.is_terminal(run):
            if not out and start > 0:
                return httpx.Response(204)
            out += "event: end\ndata: " + json.dumps({"state": run["state"]}) + "\n\n"
        return httpx.Response(200, text=": keep-alive\n\n" + out)

    def add_workflow(self, state: str, targets: list[dict], **fields) -> dict:
        wid = f"w{len(self.workflows) + 1:04d}"
        w = {"id": wid, "state": state, "tags": {}, "reason": "", "targets": targets}
        w.update(fields)
        self.workflows[wid] = w
        return w

    def workflow(self, req: httpx.Request, parts: list[str]) -> httpx.Response:
        """Workflow runs: start (two targets from the body's bundles), list, show (moving
        along ``script``), cancel."""
        if len(parts) == 4 and req.method == "POST":
            body = json.loads(req.content)
            key = req.headers.get("idempotency-key", "")
            if key and key in self.workflow_keys:
                return httpx.Response(200, json=self.workflows[self.workflow_keys[key]])
            targets = [
                {
                    "key": src.strip("./"),
                    "workspace": f"wf/{src.strip('./')}",
                    "state": "waiting",
                    "run_id": "",
                    "reason": "",
                    "run_state": "",
                    "bundle_digest": digest,
                }
                for src, digest in body["bundles"].items()
            ]
            w = self.add_workflow("running", targets, tags=body["tags"], body=body)
            if key:
                self.workflow_keys[key] = w["id"]
            return httpx.Response(200, json=w)
        if len(parts) == 4:
            want = dict(t.split("=", 1) for t in req.url.params.get_list("tag"))
            ws = [
                w
                for w in reversed(list(self.workflows.values()))
                if all(w["tags"].get(k) == v for k, v in want.items())
            ]
            return httpx.Response(200, json=ws[: int(req.url.params.get("limit", "50"))])
        w = self.workflows.get(parts[4])
        if w is None:
            return problem(404, "no such workflow run")
        if len(parts) == 5:
            self.advance(w)
            return httpx.Response(200, json=w)
        if parts[5] == "cancel":
            w["state"] = "cancelled"
            return httpx.Response(200, json=w)
        return problem(404, "no such endpoint")

    def calls(self, method: str, prefix: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.startswith(prefix)]


def problem(status: int, detail: str) -> httpx.Response:
    return httpx.Response(status, json={"title": "x", "status": status, "detail": detail})


@pytest.fixture
def coord(monkeypatch):
    fake = FakeCoordinator()
    monkeypatch.setattr(hookmod.TofuflowHook, "default_transport", httpx.MockTransport(fake))
    monkeypatch.setattr(hookmod.time, "sleep", lambda s: None)
    return fake
