"""The tofuflow hook: the coordinator's HTTP JSON API (``/api/v1/``), sync and async.

Every call is retried with exponential backoff on connection errors and on 502/503/504/429;
a submit carries an ``Idempotency-Key`` so that a retried request answers the run the first one
started instead of starting a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx
from airflow.sdk.bases.hook import BaseHook

from tofuflow_provider import __version__

USER_AGENT = f"airflow-provider-tofuflow/{__version__}"
RETRY_STATUS = {429, 502, 503, 504}

#: States a run can end in (``planned`` ends plan-only runs only).
TERMINAL_STATES = {
    "applied",
    "planned_no_changes",
    "failed",
    "cancelled",
    "rejected",
    "interrupted",
    "expired",
}
#: Terminal states that mean the run did not do what it was for.
FAILED_STATES = {"failed", "cancelled", "rejected", "interrupted", "expired"}


#: States a workflow run ends in.
WORKFLOW_TERMINAL_STATES = {"succeeded", "failed", "cancelled"}
#: Terminal states of a workflow run that mean it did not do what it was for.
WORKFLOW_FAILED_STATES = {"failed", "cancelled"}

_SOURCE = re.compile(r'^[ \t]*source[ \t]*=[ \t]*"([^"\\$]*)"', re.MULTILINE)


class TofuflowError(Exception):
    """The coordinator refused a call: ``status`` and its problem's ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"tofuflow answered {status}: {detail}")
        self.status = status
        self.detail = detail


def is_terminal(run: dict) -> bool:
    """Whether the run has ended (``planned`` is final for a plan-only run only)."""
    state = run.get("state", "")
    return state in TERMINAL_STATES or (state == "planned" and run.get("kind") == "plan_only")


def pack_module(path: str | os.PathLike) -> bytes:
    """Packs a module directory as ``tofuflow run submit`` does: a tar.gz with sorted entries,
    zero times and owners (the same module has the same digest), without local state, plans
    or ``.terraform``/``.git``/``.tofuflow``."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise ValueError(f"{root} is not a directory: pass the module directory")
    buf = io.BytesIO()
    any_tf = False
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for rel in _walk(root, ""):
            full = os.path.join(root, rel)
            info = tarfile.TarInfo(rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if os.path.islink(full):
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(full)
                tar.addfile(info)
            elif os.path.isdir(full):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = open(full, "rb").read()
                any_tf = any_tf or ("/" not in rel and rel.endswith((".tf", ".tofu")))
                info.size = len(data)
                info.mode = 0o755 if os.access(full, os.X_OK) else 0o644
                tar.addfile(info, io.BytesIO(data))
    if not any_tf:
        raise ValueError(f"{root} has no .tf or .tofu files: is it an OpenTofu module?")
    return buf.getvalue()


def workflow_sources(text: str) -> list[str]:
    """The ``source`` directories a workflow file names, each once, in file order (a
    ``source`` is a string literal: tofuflow refuses anything else)."""
    out: list[str] = []
    for src in _SOURCE.findall(text):
        if src not in out:
            out.append(src)
    return out


def pack_workflow(path: str | os.PathLike) -> tuple[str, str, dict[str, bytes]]:
    """Reads a workflow file and packs every ``source`` it names (relative to the file) as
    ``pack_module`` does: the file's name, its text, and source -> bundle."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    base = os.path.dirname(os.path.abspath(path))
    sources = workflow_sources(text)
    if not sources:
        raise ValueError(f"{path} names no stack source: is it a tofuflow workflow file?")
    bundles = {}
    for src in sources:
        full = os.path.join(base, src)
        if not os.path.isdir(full):
            raise ValueError(
                f"{path}: source {src!r} is not a directory ({full}; sources are relative "
                "to the workflow file)"
            )
        bundles[src] = pack_module(full)
    return os.path.basename(path), text, bundles


def _walk(root: str, rel: str) -> Iterator[str]:
    for name in sorted(os.listdir(os.path.join(root, rel))):
        path = f"{rel}/{name}" if rel else name
        full = os.path.join(root, path)
        if os.path.isdir(full) and not os.path.islink(full):
            if name in (".terraform", ".git", ".tofuflow"):
                continue
            yield path
            yield from _walk(root, path)
        elif (
            name.startswith("terraform.tfstate")
            or name in ("errored.tfstate", ".terraform.tfstate.lock.info")
            or name.endswith(".tfplan")
        ):
            continue
        else:
            yield path


def idempotency_key(*parts: object) -> str:
    """A stable key for a submit from the parts that identify it."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"airflow-{digest[:48]}"


def task_key(ti: Any, *parts: object) -> str:
    """The idempotency key of one try of a task instance, and ``parts``: the same try's retried
    request answers what the first one made; a new try makes anew."""
    return idempotency_key(
        ti.dag_id,
        ti.task_id,
        ti.run_id,
        getattr(ti, "map_index", -1),
        ti.try_number,
        *parts,
    )


def _extras(raw: dict) -> dict:
    """The connection's extras, also when a form stored them as ``extra__tofuflow__NAME``."""
    out = {k.removeprefix("extra__tofuflow__"): v for k, v in raw.items()}
    return {k: v for k, v in out.items() if v not in (None, "")}


def _problem(r: httpx.Response) -> TofuflowError:
    try:
        detail = r.json().get("detail") or r.text
    except ValueError:
        detail = r.text
    return TofuflowError(r.status_code, detail.strip() or r.reason_phrase)


class TofuflowHook(BaseHook):
    """Talks to a tofuflow coordinator through a ``tofuflow`` connection: host = the
    coordinator's URL (``https://tofuflow.example:7701``), password = an API token
    (``tofuflow token create``); extras ``ca_bundle`` (PEM path), ``client_cert`` and
    ``client_key`` (PEM paths, for mutual TLS), ``verify`` (false to skip TLS verification,
    for tests only), ``timeout`` (seconds per request)."""

    conn_name_attr = "tofuflow_conn_id"
    default_conn_name = "tofuflow_default"
    conn_type = "tofuflow"
    hook_name = "tofuflow"
    #: A transport every new hook uses (tests put an ``httpx.MockTransport`` here).
    default_transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None

    def __init__(
        self,
        tofuflow_conn_id: str = default_conn_name,
        retries: int = 5,
        retry_backoff: float = 1.0,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ):
        super().__init__()
        self.tofuflow_conn_id = tofuflow_conn_id
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.transport = transport
        self._settings: dict[str, Any] | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "login", "port"],
            "relabeling": {"host": "Coordinator URL", "password": "API token"},
            "placeholders": {
                "host": "https://tofuflow.example.com:7701",
                "password": "tfu_… (tofuflow token create)",
            },
        }

    # -- settings ------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The connection as client settings: base URL, headers, TLS, timeout."""
        if self._settings is None:
            conn = self.get_connection(self.tofuflow_conn_id)
            extra = _extras(conn.extra_dejson or {})
            host = (conn.host or "").rstrip("/")
            if not host:
                raise ValueError(
                    f"connection {self.tofuflow_conn_id!r} has no host: set the coordinator URL"
                )
            if "://" not in host:
                scheme = conn.schema or "http"
                host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
            verify: Any = extra.get("ca_bundle") or True
            if str(extra.get("verify", "true")).lower() in ("false", "0", "no"):
                verify = False
            cert = None
            if extra.get("client_cert"):
                cert = (extra["client_cert"], extra.get("client_key") or None)
            self._settings = {
                "base_url": host,
                "token": conn.password or "",
                "verify": verify,
                "cert": cert,
                "timeout": float(extra.get("timeout", 30)),
            }
        return self._settings

    def web_url(self, run_id: str) -> str:
        """The run's page in tofuflow's web UI."""
        return f"{self.settings()['base_url']}/ui/#/runs/{quote(run_id, safe='')}"

    def _client_args(self) -> dict[str, Any]:
        s = self.settings()
        headers = {"User-Agent": USER_AGENT}
        if s["token"]:
            headers["Authorization"] = f"Bearer {s['token']}"
        args: dict[str, Any] = {
            "base_url": s["base_url"],
            "headers": headers,
            "timeout": s["timeout"],
        }
        transport = self.transport or type(self).default_transport
        if transport is not None:
            args["transport"] = transport
        else:
            args["verify"] = s["verify"]
            if s["cert"]:
                args["cert"] = s["cert"]
        return args

    def _delay(self, attempt: int) -> float:
        return min(self.retry_backoff * (2**attempt), 30.0)

    # -- sync ----------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, retries: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        """``method path``; retried on connection errors and 429/502/503/504 (``retries``
        times, default the hook's); a refusal raises ``TofuflowError`` with the coordinator's
        reason."""
        retries = self.retries if retries is None else retries
        with httpx.Client(**self._client_args()) as client:
            for attempt in range(retries + 1):
                try:
                    r = client.request(method, path, **kwargs)
                except httpx.TransportError as e:
                    if attempt >= retries:
                        raise
                    self.log.warning("tofuflow: %s %s: %s; retrying", method, path, e)
                    time.sleep(self._delay(attempt))
                    continue
                if r.status_code in RETRY_STATUS and attempt < retries:
                    time.sleep(self._delay(attempt))
                    continue
                if r.status_code >= 400:
                    raise _problem(r)
                return r
        raise AssertionError("unreachable")

    def test_connection(self) -> tuple[bool, str]:
        try:
            me = self.me()
        except Exception as e:
            return False, str(e)
        return True, f"connected to tofuflow as {me.get('name', '?')}"

    def me(self) -> dict:
        return self.request("GET", "/api/v1/me").json()

    def upload_bundle(self, data: bytes) -> str:
        """Stores a module bundle; its digest (stored once per content)."""
        r = self.request(
            "POST", "/api/v1/bundles", content=data, headers={"Content-Type": "application/gzip"}
        )
        return r.json()["digest"]

    def upload_module(self, path: str | os.PathLike) -> str:
        return self.upload_bundle(pack_module(path))

    def submit_run(
        self,
        workspace: str,
        bundle_digest: str,
        kind: str = "plan_and_apply",
        variables: dict[str, str] | None = None,
        sensitive_variables: list[str] | None = None,
        tags: dict[str, str] | None = None,
        auto_approve: bool = False,
        pool: str = "",
        source: str = "airflow",
        pipeline_id: str = "",
        commit: str = "",
        idempotency_key: str | None = None,
        env: dict[str, str] | None = None,
        env_plain: list[str] | None = None,
    ) -> dict:
        """Starts a run; with ``idempotency_key`` a repeated call answers the same run. ``env``:
        the run's own environment variables (kept sealed by tofuflow until the run ends);
        ``env_plain``: those of its keys that are not secret."""
        body = {
            "workspace": workspace,
            "bundle_digest": bundle_digest,
            "kind": kind,
            "variables": {k: str(v) for k, v in (variables or {}).items()},
            "sensitive_variables": list(sensitive_variables or []),
            "tags": tags or {},
            "auto_approve": auto_approve,
            "pool": pool,
            "source": source,
            "pipeline_id": pipeline_id,
            "commit": commit,
        }
        if env:
            body["env"] = dict(env)
            body["env_plain"] = list(env_plain or [])
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", "/api/v1/runs", json=body, headers=headers).json()

    def get_run(self, run_id: str) -> dict:
        return self.request("GET", f"/api/v1/runs/{quote(run_id, safe='')}").json()

    def get_plan(self, run_id: str) -> dict:
        return self.request("GET", f"/api/v1/runs/{quote(run_id, safe='')}/plan").json()

    def list_runs(self, tags: dict[str, str] | None = None, workspace: str = "", limit: int = 50):
        params: list[tuple[str, str]] = [("limit", str(limit))]
        if workspace:
            params.append(("workspace", workspace))
        params += [("tag", f"{k}={v}") for k, v in (tags or {}).items()]
        return self.request("GET", "/api/v1/runs", params=params).json()["runs"]

    def _action(self, run_id: str, action: str, reason: str) -> dict:
        path = f"/api/v1/runs/{quote(run_id, safe='')}/{action}"
        return self.request("POST", path, json={"reason": reason}).json()

    def approve_run(self, run_id: str, reason: str = "") -> dict:
        return self._action(run_id, "approve", reason)

    def reject_run(self, run_id: str, reason: str = "") -> dict:
        return self._action(run_id, "reject", reason)

    def cancel_run(self, run_id: str, reason: str = "") -> dict:
        return self._action(run_id, "cancel", reason)

    def get_logs(self, run_id: str, after: str | None = None, limit: int = 1000) -> dict:
        params = {"limit": str(limit)}
        if after is not None:
            params["after"] = after
        path = f"/api/v1/runs/{quote(run_id, safe='')}/logs"
        return self.request("GET", path, params=params).json()

    def iter_logs(self, run_id: str, after: str | None = None) -> Iterator[dict]:
        """The log lines written so far after cursor ``after`` (masked by tofuflow)."""
        while True:
            page = self.get_logs(run_id, after)
            yield from page["lines"]
            if not page["lines"] or not page.get("next"):
                return
            after = page["next"]

    def get_outputs(self, run_id: str) -> dict[str, Any]:
        """The run's outputs, name -> value; sensitive ones are left out (never their value)."""
        return public_outputs(self.get_run(run_id))

    def get_state(self, workspace: str) -> dict:
        """A workspace's state versions, audit trail and lock."""
        return self.request("GET", f"/api/v1/workspaces/{quote(workspace, safe='')}/state").json()

    def wait_for_run(
        self,
        run_id: str,
        states: set[str] | None = None,
        poll_interval: float = 2.0,
        timeout: float | None = None,
        on_log=None,
        after: str | None = None,
    ) -> tuple[dict, str | None]:
        """Polls the run (at 0.5 s, then twice as long each time up to ``poll_interval``)
        until it reaches one of ``states`` or ends; passes each new log line to ``on_log``.
        Answers the run and the last log cursor seen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.5, poll_interval)
        while True:
            run = self.get_run(run_id)
            if on_log is not None:
                for line in self.iter_logs(run_id, after):
                    on_log(line)
                    after = line["cursor"]
            if (states and run["state"] in states) or is_terminal(run):
                return run, after
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"tofuflow run {run_id} is still {run['state']}")
            time.sleep(delay)
            delay = min(delay * 2, poll_interval)

    # -- workflow runs -------------------------------------------------------------------------

    def start_workflow(
        self,
        definition: str,
        bundles: dict[str, str],
        file_name: str = "workflow.hcl",
        approval: str = "",
        pool: str = "",
        tags: dict[str, str] | None = None,
        destroy: bool = False,
        idempotency_key: str | None = None,
    ) -> dict:
        """Starts a workflow run from the file's text and source -> uploaded bundle digest.
        With ``idempotency_key`` the start is retried like any request (a repeat answers the
        workflow run the first one started); without one it is sent once (a blind retry could
        start two)."""
        body: dict[str, Any] = {
            "definition": definition,
            "file_name": file_name,
            "bundles": bundles,
            "destroy": destroy,
            "tags": tags or {},
        }
        if approval:
            body["approval"] = approval
        if pool:
            body["pool"] = pool
        if idempotency_key:
            headers = {"Idempotency-Key": idempotency_key}
            return self.request("POST", "/api/v1/workflow-runs", json=body, headers=headers).json()
        return self.request("POST", "/api/v1/workflow-runs", json=body, retries=0).json()

    def upload_workflow(self, path: str | os.PathLike) -> tuple[str, str, dict[str, str]]:
        """Packs and uploads every source of workflow file ``path``: its name, its text and
        source -> bundle digest, ready for ``start_workflow``."""
        name, text, packed = pack_workflow(path)
        return name, text, {src: self.upload_bundle(data) for src, data in packed.items()}

    def get_workflow_run(self, workflow_run_id: str) -> dict:
        path = f"/api/v1/workflow-runs/{quote(workflow_run_id, safe='')}"
        return self.request("GET", path).json()

    def list_workflow_runs(
        self, limit: int = 50, before: str = "", tags: dict[str, str] | None = None
    ) -> list[dict]:
        """Workflow runs, newest first, carrying every one of ``tags``."""
        params: list[tuple[str, str]] = [("limit", str(limit))]
        if before:
            params.append(("before", before))
        params += [("tag", f"{k}={v}") for k, v in (tags or {}).items()]
        return self.request("GET", "/api/v1/workflow-runs", params=params).json()

    def _workflow_action(self, workflow_run_id: str, action: str) -> dict:
        path = f"/api/v1/workflow-runs/{quote(workflow_run_id, safe='')}/{action}"
        return self.request("POST", path).json()

    def approve_workflow_run(self, workflow_run_id: str) -> dict:
        return self._workflow_action(workflow_run_id, "approve")

    def cancel_workflow_run(self, workflow_run_id: str) -> dict:
        return self._workflow_action(workflow_run_id, "cancel")

    def retry_workflow_run(self, workflow_run_id: str) -> dict:
        return self._workflow_action(workflow_run_id, "retry")

    def wait_for_workflow_run(
        self, workflow_run_id: str, poll_interval: float = 5.0, timeout: float | None = None
    ) -> dict:
        """Polls the workflow run (at 0.5 s, then twice as long each time up to
        ``poll_interval``) until it ends; answers it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.5, poll_interval)
        while True:
            w = self.get_workflow_run(workflow_run_id)
            if w["state"] in WORKFLOW_TERMINAL_STATES:
                return w
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"tofuflow workflow run {workflow_run_id} is still {w['state']}")
            time.sleep(delay)
            delay = min(delay * 2, poll_interval)

    # -- async ---------------------------------------------------------------------------------

    async def arequest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """As ``request``, without blocking the event loop (for triggers)."""
        async with httpx.AsyncClient(**self._client_args()) as client:
            for attempt in range(self.retries + 1):
                try:
                    r = await client.request(method, path, **kwargs)
                except httpx.TransportError as e:
                    if attempt >= self.retries:
                        raise
                    self.log.warning("tofuflow: %s %s: %s; retrying", method, path, e)
                    await asyncio.sleep(self._delay(attempt))
                    continue
                if r.status_code in RETRY_STATUS and attempt < self.retries:
                    await asyncio.sleep(self._delay(attempt))
                    continue
                if r.status_code >= 400:
                    raise _problem(r)
                return r
        raise AssertionError("unreachable")

    async def aget_run(self, run_id: str) -> dict:
        return (await self.arequest("GET", f"/api/v1/runs/{quote(run_id, safe='')}")).json()

    async def acancel_run(self, run_id: str, reason: str = "") -> dict:
        path = f"/api/v1/runs/{quote(run_id, safe='')}/cancel"
        return (await self.arequest("POST", path, json={"reason": reason})).json()

    async def aget_workflow_run(self, workflow_run_id: str) -> dict:
        path = f"/api/v1/workflow-runs/{quote(workflow_run_id, safe='')}"
        return (await self.arequest("GET", path)).json()

    async def acancel_workflow_run(self, workflow_run_id: str) -> dict:
        path = f"/api/v1/workflow-runs/{quote(workflow_run_id, safe='')}/cancel"
        return (await self.arequest("POST", path)).json()

    async def aapprove_run(self, run_id: str, reason: str = "") -> dict:
        path = f"/api/v1/runs/{quote(run_id, safe='')}/approve"
        return (await self.arequest("POST", path, json={"reason": reason})).json()

    async def aget_logs(self, run_id: str, after: str | None = None, limit: int = 1000) -> dict:
        params = {"limit": str(limit)}
        if after is not None:
            params["after"] = after
        path = f"/api/v1/runs/{quote(run_id, safe='')}/logs"
        return (await self.arequest("GET", path, params=params)).json()

    async def astream_log(
        self, run_id: str, after: str | None = None
    ) -> AsyncIterator[tuple[str, str, str]]:
        """The run's log as the API's Server-Sent Events stream sends it: ``(id, event, data)``
        for each ``log`` event (id = the line's cursor, data = the line as JSON), then one
        ``end`` event when the run ends. Resumes after cursor ``after`` (``Last-Event-ID``).
        Ends without an ``end`` event when the run had ended and nothing follows ``after``
        (204), or when the connection drops: the caller reconnects from its last cursor."""
        args = self._client_args()
        # The server sends a keep-alive comment every 15 s: a minute of silence is a dead link.
        args["timeout"] = httpx.Timeout(args["timeout"], read=60.0)
        headers = {"Accept": "text/event-stream"}
        if after is not None:
            headers["Last-Event-ID"] = after
        path = f"/api/v1/runs/{quote(run_id, safe='')}/logs/stream"
        async with httpx.AsyncClient(**args) as client:
            async with client.stream("GET", path, headers=headers) as r:
                if r.status_code == 204:
                    return
                if r.status_code >= 400:
                    await r.aread()
                    raise _problem(r)
                ev_id, event, data = "", "", []
                async for line in r.aiter_lines():
                    if line == "":
                        if event or data:
                            yield ev_id, event or "message", "\n".join(data)
                        ev_id, event, data = "", "", []
                    elif line.startswith(":"):
                        continue
                    else:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "id":
                            ev_id = value
                        elif field == "event":
                            event = value
                        elif field == "data":
                            data.append(value)


def public_outputs(run: dict) -> dict[str, Any]:
    """A run's outputs without the sensitive ones (``tofu output -json``'s shape in)."""
    out = {}
    for name, o in (run.get("outputs") or {}).items():
        if isinstance(o, dict) and o.get("sensitive"):
            continue
        out[name] = o.get("value") if isinstance(o, dict) else o
    return out
