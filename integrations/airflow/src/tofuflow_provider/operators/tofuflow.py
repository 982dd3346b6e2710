"""Operators that start and follow tofuflow runs: plan, apply (of a reviewed plan), run (plan
and apply by policy) and destroy. All are deferrable by default: while a run plans or applies
the task waits in the triggerer, not in a worker slot.

Every run they start is tagged with the Airflow task's identity (``dag_id``, ``task_id``,
``run_id``, ``try_number``, ``logical_date``, ``map_index`` for mapped tasks). A retried task
first looks for the run an earlier try started (by those tags): one that is still going or
succeeded is followed again, never started twice; only after a failed, cancelled, rejected or
expired run does a retry start a new one. The submit itself carries an idempotency key derived
from the task's identity and try number, so a submit retried over a broken connection answers
the run the first request started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tofuflow_provider.hooks.tofuflow import (
    FAILED_STATES,
    TofuflowError,
    TofuflowHook,
    is_terminal,
    public_outputs,
    task_key,
)
from tofuflow_provider.links.tofuflow import TofuflowRunLink
from tofuflow_provider.triggers.tofuflow import TofuflowRunTrigger

#: States in which a submitted plan is ready for review (or needs none).
PLAN_READY = ["awaiting_approval", "planned", "planned_no_changes", "approved", "applying"]
#: States in which an apply (or destroy) is done.
APPLY_DONE = ["applied", "planned_no_changes"]
MAX_TAG_VALUE = 256


def tag_value(v: Any) -> str:
    """A tag value tofuflow accepts: text without control characters, at most 256 characters."""
    s = "" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v))
    return "".join(c if c.isprintable() else " " for c in s)[:MAX_TAG_VALUE]


def airflow_tags(context: Any) -> dict[str, str]:
    """The Airflow task's identity as run tags."""
    ti = context["ti"]
    tags = {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "try_number": ti.try_number,
        "logical_date": context.get("logical_date"),
    }
    if getattr(ti, "map_index", -1) is not None and getattr(ti, "map_index", -1) >= 0:
        tags["map_index"] = ti.map_index
    return {k: tag_value(v) for k, v in tags.items()}


def _var_text(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


class TofuflowBaseOperator(BaseOperator):
    """What the operators share: the connection, following a run (in the worker or deferred),
    its log lines in the task log, the extra link, cancel on kill."""

    operator_extra_links = (TofuflowRunLink(),)
    ui_color = "#f3e6ff"

    def __init__(
        self,
        *,
        tofuflow_conn_id: str = TofuflowHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 5.0,
        cancel_on_kill: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.tofuflow_conn_id = tofuflow_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.cancel_on_kill = cancel_on_kill
        self._run_id: str | None = None

    @property
    def hook(self) -> TofuflowHook:
        return TofuflowHook(self.tofuflow_conn_id)

    def _show_line(self, line: dict) -> None:
        self.log.info("[%s] %s", line.get("phase", ""), line.get("line", ""))

    def _log_cursor(self, run_id: str) -> str | None:
        after = None
        for line in self.hook.iter_logs(run_id):
            after = line["cursor"]
        return after

    def _announce(self, context: Any, run: dict) -> None:
        url = self.hook.web_url(run["id"])
        ti = context["ti"]
        ti.xcom_push(key="run_url", value=url)
        ti.xcom_push(key=TofuflowRunLink().xcom_key, value=url)
        self.log.info("tofuflow run %s (%s): %s", run["id"], run["state"], url)

    def _deadline(self, context: Any) -> float | None:
        if not self.execution_timeout:
            return None
        start = getattr(context["ti"], "start_date", None)
        begun = start.timestamp() if start else time.time()
        margin = min(5.0, self.execution_timeout.total_seconds() / 10)
        return begun + self.execution_timeout.total_seconds() - margin

    def _follow(self, context: Any, run_id: str, states: list[str], after: str | None) -> Any:
        """Waits for the run to reach ``states`` or end: in this worker, or deferred."""
        self._run_id = run_id
        if self.deferrable:
            run = self.hook.get_run(run_id)
            if not (run["state"] in states or is_terminal(run)):
                self.defer(
                    trigger=TofuflowRunTrigger(
                        conn_id=self.tofuflow_conn_id,
                        run_id=run_id,
                        states=states,
                        poll_interval=self.poll_interval,
                        deadline=self._deadline(context),
                        cancel_on_kill=self.cancel_on_kill,
                        after=after,
                    ),
                    method_name="execute_complete",
                )
            for line in self.hook.iter_logs(run_id, after):
                self._show_line(line)
            return self._finish(context, run)
        run, _ = self.hook.wait_for_run(
            run_id, set(states), self.poll_interval, on_log=self._show_line, after=after
        )
        return self._finish(context, run)

    def execute_complete(self, context: Any, event: dict) -> Any:
        run_id = event["run_id"]
        self._run_id = run_id
        for line in self.hook.iter_logs(run_id, event.get("after")):
            self._show_line(line)
        if event["status"] == "timeout":
            self._cancel(event["message"])
            raise AirflowException(f"tofuflow run {run_id}: {event['message']}; cancelled it")
        if event["status"] == "error":
            raise AirflowException(f"following tofuflow run {run_id} failed: {event['message']}")
        return self._finish(context, self.hook.get_run(run_id))

    def _fail_if_failed(self, run: dict) -> None:
        if run["state"] in FAILED_STATES:
            why = run.get("error") or run.get("limit_hit") or ""
            last = (run.get("transitions") or [{}])[-1]
            why = why or last.get("reason", "")
            raise AirflowException(
                f"tofuflow run {run['id']} {run['state']}" + (f": {why}" if why else "")
            )

    def _finish(self, context: Any, run: dict) -> Any:
        raise NotImplementedError

    def _cancel(self, reason: str) -> None:
        if not (self._run_id and self.cancel_on_kill):
            return
        try:
            self.hook.cancel_run(self._run_id, reason)
            self.log.info("cancelled tofuflow run %s: %s", self._run_id, reason)
        except TofuflowError as e:
            self.log.warning("could not cancel tofuflow run %s: %s", self._run_id, e.detail)

    def on_kill(self) -> None:
        self._cancel("the Airflow task was killed or timed out")


class TofuflowSubmitOperator(TofuflowBaseOperator):
    """Starts a run of a module (``module_path``, packed and uploaded, or a stored
    ``bundle_digest``) on ``workspace`` and follows it.

    :param variables: tofu variables (values templated; dicts and lists as JSON).
    :param sensitive_variables: tofu variables whose values are secret: masked in tofuflow's
        logs and this task's log, sealed at rest by tofuflow, never in XCom. Not templated.
    :param variables_from_connections: variable name -> ``"conn_id.field"`` (``login``,
        ``password``, ``host``, ``schema``, ``port`` or ``extra.KEY``): read from the Airflow
        connection when the task runs, sent as a sensitive variable.
    :param env_from_connections: environment variable -> ``"conn_id.field"`` (as above): read
        when the task runs and sent as the run's own environment (e.g. ``AWS_ACCESS_KEY_ID``
        for a provider that reads it): tofuflow keeps it sealed, gives it to the run's tasks
        only with their lease, masks it, and erases it when the run ends. Needs a coordinator
        started with ``--state-key``; values must be at least 8 characters (secrets).
    :param env: non-secret environment variables for the run (e.g. ``AWS_REGION``), sent the
        same way but not masked.
    :param agent_pool: the tofuflow pool whose agents run it (``pool`` is Airflow's own).
    :param tags: extra run tags (``key`` lowercase; the Airflow identity tags are added).
    """

    template_fields: Sequence[str] = (
        "workspace",
        "module_path",
        "bundle_digest",
        "variables",
        "tags",
        "agent_pool",
        "commit",
    )
    template_fields_renderers = {"variables": "json", "tags": "json"}
    kind = "plan_and_apply"
    auto_approve = False
    wait_states: list[str] = APPLY_DONE

    def __init__(
        self,
        *,
        workspace: str,
        module_path: str | None = None,
        bundle_digest: str | None = None,
        variables: dict[str, Any] | None = None,
        sensitive_variables: dict[str, str] | None = None,
        variables_from_connections: dict[str, str] | None = None,
        env_from_connections: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        agent_pool: str = "",
        commit: str = "",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if not module_path and not bundle_digest:
            raise ValueError("pass module_path (a module directory) or bundle_digest")
        self.workspace = workspace
        self.module_path = module_path
        self.bundle_digest = bundle_digest
        self.variables = variables or {}
        self.sensitive_variables = sensitive_variables or {}
        self.variables_from_connections = variables_from_connections or {}
        self.env_from_connections = env_from_connections or {}
        self.env = env or {}
        self.tags = tags or {}
        self.agent_pool = agent_pool
        self.commit = commit

    @staticmethod
    def _connection_field(ref: str) -> str:
        """The value of ``conn_id.field`` from an Airflow connection, masked in Airflow's logs."""
        from airflow.sdk import BaseHook
        from airflow.sdk.log import mask_secret

        conn_id, _, field = ref.partition(".")
        conn = BaseHook.get_connection(conn_id)
        if field.startswith("extra."):
            value = (conn.extra_dejson or {}).get(field[len("extra.") :])
        elif field in ("login", "password", "host", "schema", "port"):
            value = getattr(conn, field)
        else:
            raise ValueError(f"{ref!r}: use conn_id.login|password|host|schema|port|extra.KEY")
        if value is None:
            raise ValueError(f"connection {conn_id!r} has no {field}")
        mask_secret(str(value))
        return str(value)

    def _secrets(self) -> dict[str, str]:
        from airflow.sdk.log import mask_secret

        out = {k: str(v) for k, v in self.sensitive_variables.items()}
        for v in out.values():
            mask_secret(v)
        for var, ref in self.variables_from_connections.items():
            out[var] = self._connection_field(ref)
        return out

    def _run_env(self) -> tuple[dict[str, str], list[str]]:
        """The run's own environment, and which of its keys are not secret."""
        env = {k: str(v) for k, v in self.env.items()}
        for name, ref in self.env_from_connections.items():
            env[name] = self._connection_field(ref)
        return env, sorted(self.env)

    def _previous_run(self, context: Any) -> dict | None:
        """The run an earlier try of this task instance started, if any (newest first)."""
        ident = {k: v for k, v in airflow_tags(context).items() if k != "try_number"}
        ident.pop("logical_date", None)
        runs = self.hook.list_runs(tags=ident, workspace=self.workspace, limit=1)
        return runs[0] if runs else None

    def execute(self, context: Any) -> Any:
        hook = self.hook
        prev = self._previous_run(context)
        if prev is not None and prev["state"] not in FAILED_STATES:
            self.log.info(
                "try %s re-attaches to run %s (%s) started by try %s: it is not started twice",
                context["ti"].try_number,
                prev["id"],
                prev["state"],
                prev.get("tags", {}).get("try_number", "?"),
            )
            run = prev
        else:
            run = self._submit(context, hook)
        self._announce(context, run)
        return self._follow(context, run["id"], self.wait_states, None)

    def _submit(self, context: Any, hook: TofuflowHook) -> dict:
        digest = self.bundle_digest or hook.upload_module(self.module_path)
        secrets = self._secrets()
        env, env_plain = self._run_env()
        variables = {k: _var_text(v) for k, v in self.variables.items()}
        variables.update(secrets)
        tags = {k: tag_value(v) for k, v in self.tags.items()}
        tags.update(airflow_tags(context))
        ti = context["ti"]
        key = task_key(ti, self.workspace, self.kind)
        return hook.submit_run(
            workspace=self.workspace,
            bundle_digest=digest,
            kind=self.kind,
            variables=variables,
            sensitive_variables=sorted(secrets),
            tags=tags,
            auto_approve=self.auto_approve,
            pool=self.agent_pool,
            source="airflow",
            pipeline_id=f"{ti.dag_id}/{ti.run_id}",
            commit=self.commit,
            idempotency_key=key,
            env=env,
            env_plain=env_plain,
        )

    def _finish(self, context: Any, run: dict) -> Any:
        self._fail_if_failed(run)
        outputs = public_outputs(run)
        context["ti"].xcom_push(key="run_id", value=run["id"])
        context["ti"].xcom_push(key="outputs", value=outputs)
        return outputs


class TofuflowPlanOperator(TofuflowSubmitOperator):
    """Plans ``module_path`` on ``workspace`` and leaves the plan waiting for approval (apply it
    with ``TofuflowApplyOperator``, or in tofuflow). Returns the run id; pushes the plan's
    counts as XCom ``plan_summary``. ``fail_on_changes=True`` makes it a drift check: the run is
    plan-only and the task fails when the plan has changes."""

    wait_states = PLAN_READY

    def __init__(self, *, fail_on_changes: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.fail_on_changes = fail_on_changes
        self.kind = "plan_only" if fail_on_changes else "plan_and_apply"

    def _finish(self, context: Any, run: dict) -> Any:
        self._fail_if_failed(run)
        s = run.get("summary") or {}
        summary = {
            "run_id": run["id"],
            "state": run["state"],
            "has_changes": bool(run.get("has_changes")),
            "add": s.get("add", 0),
            "change": s.get("change", 0),
            "destroy": s.get("destroy", 0),
        }
        context["ti"].xcom_push(key="plan_summary", value=summary)
        self.log.info(
            "plan of run %s: %s to add, %s to change, %s to destroy",
            run["id"],
            summary["add"],
            summary["change"],
            summary["destroy"],
        )
        if self.fail_on_changes and summary["has_changes"]:
            # A retry would plan the same drift again: fail without retrying.
            raise AirflowFailException(
                f"tofuflow run {run['id']}: the plan has changes (drift): {summary}"
            )
        return run["id"]


class TofuflowRunOperator(TofuflowSubmitOperator):
    """Plans and applies ``module_path`` on ``workspace``: approved automatically where the
    workspace's rules allow it (``auto_approve``), else it waits for a human's approval in
    tofuflow. Returns the outputs (sensitive ones left out), also XCom ``outputs``; XCom
    ``run_id`` is the run."""

    def __init__(self, *, auto_approve: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.auto_approve = auto_approve


class TofuflowDestroyOperator(TofuflowRunOperator):
    """Destroys what ``workspace``'s state holds (the module is needed to plan the destroy)."""

    kind = "destroy"


class TofuflowApplyOperator(TofuflowBaseOperator):
    """Applies the saved plan of run ``run_id`` (typically ``"{{ ti.xcom_pull('plan') }}"``):
    approves it and waits for the apply. Exactly the reviewed plan is applied; a retry of this
    task follows the same apply and never approves twice; a run that failed is not applied
    again (plan anew). Returns the outputs (sensitive ones left out), also XCom ``outputs``."""

    template_fields: Sequence[str] = ("run_id", "reason")

    def __init__(self, *, run_id: str, reason: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.run_id = run_id
        self.reason = reason

    def execute(self, context: Any) -> Any:
        hook = self.hook
        run = hook.get_run(self.run_id)
        self._announce(context, run)
        after = self._log_cursor(self.run_id)
        if run["state"] == "awaiting_approval":
            ti = context["ti"]
            why = self.reason or f"Airflow {ti.dag_id}.{ti.task_id} ({ti.run_id})"
            try:
                run = hook.approve_run(self.run_id, why)
            except TofuflowError as e:
                if e.status != 409:
                    raise AirflowException(f"cannot approve run {self.run_id}: {e.detail}") from e
                run = hook.get_run(self.run_id)
        if run["state"] not in APPLY_DONE + ["approved", "applying"] and not is_terminal(run):
            raise AirflowException(
                f"tofuflow run {self.run_id} is {run['state']}: there is no plan to apply yet"
            )
        return self._follow(context, self.run_id, APPLY_DONE, after)

    def _finish(self, context: Any, run: dict) -> Any:
        try:
            self._fail_if_failed(run)
        except AirflowException as e:
            # A retry would not apply this plan again (it is spent): plan anew instead.
            raise AirflowFailException(str(e)) from None
        outputs = public_outputs(run)
        context["ti"].xcom_push(key="outputs", value=outputs)
        return outputs
