"""The operator that runs a tofuflow workflow: a workflow file's stacks, as one workflow run.

It packs every ``source`` directory the file names (relative to the file), uploads them, starts
the workflow run tagged with the Airflow task's identity (as the other operators tag their
runs; tofuflow puts those tags on every run of the workflow run) and waits for it to end:
deferred by default, through ``TofuflowWorkflowTrigger``, which polls the workflow run.

A retried task first looks for the workflow run an earlier try started (filtered by its
``dag_id``, ``task_id``, ``run_id`` and ``map_index`` tags): one that is still going or
succeeded is followed again; only after a failed or cancelled one does a retry start a new
workflow run. The start carries an ``Idempotency-Key`` made of the task instance and its try
number, so a start whose answer was lost is retried safely and starts one workflow run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowException

from tofuflow_provider.hooks.tofuflow import (
    WORKFLOW_FAILED_STATES,
    WORKFLOW_TERMINAL_STATES,
    TofuflowError,
    task_key,
)
from tofuflow_provider.operators.tofuflow import TofuflowBaseOperator, airflow_tags, tag_value
from tofuflow_provider.triggers.tofuflow import TofuflowWorkflowTrigger

#: How many of the task instance's workflow runs a retry looks through (newest first).
REATTACH_LOOKBACK = 50


def target_summary(w: dict) -> list[dict[str, str]]:
    """Each target's key, workspace, state and current run (nothing else: no outputs)."""
    return [
        {
            "key": t.get("key", ""),
            "workspace": t.get("workspace", ""),
            "state": t.get("state", ""),
            "run_id": t.get("run_id", ""),
        }
        for t in w.get("targets") or []
    ]


class TofuflowWorkflowOperator(TofuflowBaseOperator):
    """Runs the workflow file ``workflow_file`` as one tofuflow workflow run and waits for it
    to end. Returns ``{"workflow_run_id", "state", "targets": [{key, workspace, state,
    run_id}]}``, also pushed as XCom ``workflow_run_id``, ``state`` and ``targets`` (no
    outputs: read them from the targets' runs). A workflow run that ends ``failed`` or
    ``cancelled`` fails the task with its reason and the failed targets.

    :param workflow_file: the workflow file (HCL); its ``source`` directories are relative to it.
    :param approval: ``each``, ``once`` or ``auto`` (default: the file's own).
    :param agent_pool: the tofuflow pool of stacks that name none (``pool`` is Airflow's own).
    :param tags: extra tags on every run of the workflow run (the Airflow identity tags are
        added).
    :param destroy: destroy every target, dependants first.
    """

    template_fields: Sequence[str] = ("workflow_file", "approval", "agent_pool", "tags")
    template_fields_renderers = {"tags": "json"}
    # The web UI has no workflow page yet: no extra link.
    operator_extra_links = ()

    def __init__(
        self,
        *,
        workflow_file: str,
        approval: str = "",
        agent_pool: str = "",
        tags: dict[str, str] | None = None,
        destroy: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.workflow_file = workflow_file
        self.approval = approval
        self.agent_pool = agent_pool
        self.tags = tags or {}
        self.destroy = destroy
        self._workflow_run_id: str | None = None

    def _identity(self, context: Any) -> dict[str, str]:
        ident = airflow_tags(context)
        ident.pop("try_number", None)
        ident.pop("logical_date", None)
        return ident

    def _previous(self, context: Any) -> dict | None:
        """The newest workflow run an earlier try of this task instance started, if any."""
        ident = self._identity(context)
        for w in self.hook.list_workflow_runs(limit=REATTACH_LOOKBACK, tags=ident):
            tags = w.get("tags") or {}
            if all(tags.get(k) == v for k, v in ident.items()) and (
                "map_index" in ident or "map_index" not in tags
            ):
                return w
        return None

    def execute(self, context: Any) -> Any:
        prev = self._previous(context)
        if prev is not None and prev["state"] not in WORKFLOW_FAILED_STATES:
            self.log.info(
                "try %s re-attaches to workflow run %s (%s) started by try %s: it is not "
                "started twice",
                context["ti"].try_number,
                prev["id"],
                prev["state"],
                (prev.get("tags") or {}).get("try_number", "?"),
            )
            w = prev
        else:
            w = self._start(context)
        self._workflow_run_id = w["id"]
        context["ti"].xcom_push(key="workflow_run_id", value=w["id"])
        self.log.info(
            "tofuflow workflow run %s (%s), %d targets: %s",
            w["id"],
            w["state"],
            len(w.get("targets") or []),
            ", ".join(f"{t['key']} -> {t['workspace']}" for t in target_summary(w)),
        )
        if w["state"] in WORKFLOW_TERMINAL_STATES:
            return self._finish(context, w)
        if self.deferrable:
            self.defer(
                trigger=TofuflowWorkflowTrigger(
                    conn_id=self.tofuflow_conn_id,
                    workflow_run_id=w["id"],
                    poll_interval=self.poll_interval,
                    deadline=self._deadline(context),
                    cancel_on_kill=self.cancel_on_kill,
                ),
                method_name="execute_complete",
            )
        return self._finish(context, self.hook.wait_for_workflow_run(w["id"], self.poll_interval))

    def _start(self, context: Any) -> dict:
        hook = self.hook
        name, text, bundles = hook.upload_workflow(self.workflow_file)
        tags = {k: tag_value(v) for k, v in self.tags.items()}
        tags.update(airflow_tags(context))
        self.log.info("uploaded %d sources of %s: %s", len(bundles), name, bundles)
        key = task_key(context["ti"], "workflow", name)
        return hook.start_workflow(
            definition=text,
            bundles=bundles,
            file_name=name,
            approval=self.approval,
            pool=self.agent_pool,
            tags=tags,
            destroy=self.destroy,
            idempotency_key=key,
        )

    def execute_complete(self, context: Any, event: dict) -> Any:
        wid = event["workflow_run_id"]
        self._workflow_run_id = wid
        if event["status"] == "timeout":
            self._cancel(event["message"])
            raise AirflowException(f"tofuflow workflow run {wid}: {event['message']}; cancelled it")
        if event["status"] == "error":
            raise AirflowException(
                f"following tofuflow workflow run {wid} failed: {event['message']}"
            )
        return self._finish(context, self.hook.get_workflow_run(wid))

    def _finish(self, context: Any, w: dict) -> dict:
        targets = target_summary(w)
        ti = context["ti"]
        ti.xcom_push(key="state", value=w["state"])
        ti.xcom_push(key="targets", value=targets)
        for t in targets:
            self.log.info(
                "  %s (%s): %s, run %s", t["key"], t["workspace"], t["state"], t["run_id"] or "-"
            )
        if w["state"] in WORKFLOW_FAILED_STATES:
            failed = [
                f"{t['key']} ({t['workspace']}, run {t.get('run_id') or '-'}"
                + (f": {t['reason']}" if t.get("reason") else "")
                + ")"
                for t in w.get("targets") or []
                if t.get("state") == "failed"
            ]
            why = w.get("reason") or ""
            raise AirflowException(
                f"tofuflow workflow run {w['id']} {w['state']}"
                + (f": {why}" if why else "")
                + (f"; failed targets: {'; '.join(failed)}" if failed else "")
            )
        return {"workflow_run_id": w["id"], "state": w["state"], "targets": targets}

    def _cancel(self, reason: str) -> None:
        if not (self._workflow_run_id and self.cancel_on_kill):
            return
        try:
            self.hook.cancel_workflow_run(self._workflow_run_id)
            self.log.info("cancelled tofuflow workflow run %s: %s", self._workflow_run_id, reason)
        except TofuflowError as e:
            self.log.warning(
                "could not cancel tofuflow workflow run %s: %s", self._workflow_run_id, e.detail
            )
