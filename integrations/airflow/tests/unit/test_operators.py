"""The operators' decisions against the in-memory coordinator: tags, re-attaching on retry,
approving once, deferring, cancel on kill, outputs without secrets."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from tofuflow_provider.operators.tofuflow import (
    TofuflowApplyOperator,
    TofuflowPlanOperator,
    TofuflowRunOperator,
    tag_value,
)
from tofuflow_provider.sensors.tofuflow import TofuflowApprovalSensor
from tofuflow_provider.triggers.tofuflow import TofuflowRunTrigger


class FakeTI:
    def __init__(self, try_number=1):
        self.dag_id, self.task_id, self.run_id = "gpu_env", "plan", "manual__2026-12-07T01:00:00"
        self.try_number, self.map_index = try_number, -1
        self.start_date = dt.datetime.now(dt.timezone.utc)
        self.xcom: dict = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value


def ctx(ti=None):
    return {"ti": ti or FakeTI(), "logical_date": dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc)}


def plan_op(**kw):
    kw.setdefault("deferrable", False)
    return TofuflowPlanOperator(
        task_id="plan", workspace="ml/a", bundle_digest="sha256:abc", poll_interval=0, **kw
    )


def test_a_plan_is_tagged_with_the_airflow_task_and_returns_its_run_id(coord):
    c = ctx()
    op = plan_op(tags={"team": "ml\nops"})
    coord.script["r0001"] = ["planning", "awaiting_approval"]
    run_id = op.execute(c)
    assert run_id == "r0001"
    tags = coord.runs[run_id]["tags"]
    assert tags == {
        "team": "ml ops",
        "dag_id": "gpu_env",
        "task_id": "plan",
        "run_id": "manual__2026-12-07T01:00:00",
        "try_number": "1",
        "logical_date": "2026-12-07T00:00:00+00:00",
    }
    assert c["ti"].xcom["plan_summary"]["add"] == 2
    assert c["ti"].xcom["run_url"].endswith("/ui/#/runs/r0001")


def test_a_retry_reattaches_to_the_run_of_the_earlier_try(coord):
    coord.script["r0001"] = ["awaiting_approval"]
    first = plan_op().execute(ctx(FakeTI(1)))
    second = plan_op().execute(ctx(FakeTI(2)))
    assert first == second and len(coord.calls("POST", "/api/v1/runs")) == 1


def test_a_retry_after_a_failed_run_starts_a_new_one(coord):
    coord.script["r0001"] = ["failed"]
    with pytest.raises(AirflowException, match="r0001 failed"):
        plan_op().execute(ctx(FakeTI(1)))
    coord.script["r0002"] = ["awaiting_approval"]
    assert plan_op().execute(ctx(FakeTI(2))) == "r0002"
    keys = {r.headers["idempotency-key"] for r in coord.calls("POST", "/api/v1/runs")}
    assert len(keys) == 2


def test_fail_on_changes_fails_a_plan_with_changes(coord):
    coord.script["r0001"] = ["planned"]
    with pytest.raises(AirflowFailException, match="drift"):
        plan_op(fail_on_changes=True).execute(ctx())
    assert coord.runs["r0001"]["kind"] == "plan_only"


def test_the_failed_runs_reason_fails_the_task(coord):
    coord.script["r0001"] = [{"state": "failed", "error": "plan: exit status 1: boom"}]
    with pytest.raises(AirflowException, match="r0001 failed: plan: exit status 1: boom"):
        plan_op().execute(ctx())


def test_apply_approves_once_and_a_retry_follows_the_same_apply(coord):
    run = coord.add_run("awaiting_approval")
    run["outputs"] = {
        "ip": {"value": "10.0.0.7", "sensitive": False},
        "key": {"value": "(sensitive)", "sensitive": True},
    }
    coord.script[run["id"]] = ["awaiting_approval", "applying", "applied"]
    op = TofuflowApplyOperator(task_id="apply", run_id=run["id"], deferrable=False, poll_interval=0)
    c = ctx()
    assert op.execute(c) == {"ip": "10.0.0.7"}
    assert c["ti"].xcom["outputs"] == {"ip": "10.0.0.7"}
    assert op.execute(ctx(FakeTI(2))) == {"ip": "10.0.0.7"}
    assert len(coord.calls("POST", f"/api/v1/runs/{run['id']}/approve")) == 1


def test_apply_of_a_failed_run_is_refused(coord):
    run = coord.add_run("failed", error="tofu apply exited 1")
    op = TofuflowApplyOperator(task_id="apply", run_id=run["id"], deferrable=False)
    with pytest.raises(AirflowFailException, match="tofu apply exited 1"):
        op.execute(ctx())
    assert not coord.calls("POST", f"/api/v1/runs/{run['id']}/approve")


def test_deferrable_operators_defer_to_the_trigger_and_resume_with_the_logs(coord):
    op = TofuflowRunOperator(task_id="run", workspace="ml/a", bundle_digest="sha256:abc")
    assert op.deferrable
    with pytest.raises(TaskDeferred) as d:
        op.execute(ctx())
    trig = d.value.trigger
    assert isinstance(trig, TofuflowRunTrigger) and trig.run_id == "r0001"
    assert coord.runs["r0001"]["tags"]["task_id"] == "plan"
    coord.runs["r0001"]["state"] = "applied"
    assert trig.after is None
    event = {"status": "success", "run_id": "r0001", "state": "applied", "after": "0"}
    assert op.execute_complete(ctx(), event) == {}
    afters = [r.url.params.get("after") for r in coord.calls("GET", "/api/v1/runs/r0001/logs")]
    assert afters == ["0", "1"], "the log is shown from the cursor the trigger handed back"


def test_a_trigger_timeout_cancels_the_run(coord):
    run = coord.add_run("applying")
    op = TofuflowRunOperator(task_id="run", workspace="ml/a", bundle_digest="sha256:abc")
    event = {"status": "timeout", "run_id": run["id"], "message": "timed out"}
    with pytest.raises(AirflowException, match="cancelled"):
        op.execute_complete(ctx(), event)
    assert coord.runs[run["id"]]["state"] == "cancelled"


def test_on_kill_cancels_the_run(coord):
    run = coord.add_run("applying")
    op = TofuflowApplyOperator(task_id="apply", run_id=run["id"])
    op._run_id = run["id"]
    op.on_kill()
    assert coord.runs[run["id"]]["state"] == "cancelled"


def test_secrets_from_connections_are_sensitive_variables(coord):
    coord.script["r0001"] = ["awaiting_approval"]
    plan_op(
        variables={"region": "eu", "sizes": [1, 2]},
        variables_from_connections={"cloud_password": "cloud.password"},
    ).execute(ctx())
    import json

    body = json.loads(coord.calls("POST", "/api/v1/runs")[0].content)
    assert body["variables"]["cloud_password"] == "cloud-secret-canary-7f3a"
    assert body["variables"]["sizes"] == "[1, 2]"
    assert body["sensitive_variables"] == ["cloud_password"]


def test_env_from_connections_is_the_runs_own_environment_never_a_variable(coord):
    coord.script["r0001"] = ["awaiting_approval"]
    plan_op(
        env_from_connections={"AWS_SECRET_ACCESS_KEY": "cloud.password"},
        env={"AWS_REGION": "eu"},
    ).execute(ctx())
    import json

    body = json.loads(coord.calls("POST", "/api/v1/runs")[0].content)
    assert body["env"] == {"AWS_SECRET_ACCESS_KEY": "cloud-secret-canary-7f3a", "AWS_REGION": "eu"}
    assert body["env_plain"] == ["AWS_REGION"]
    assert "cloud-secret-canary-7f3a" not in json.dumps(body["variables"])


def test_the_approval_sensor_waits_for_a_decision(coord):
    run = coord.add_run("awaiting_approval")
    s = TofuflowApprovalSensor(task_id="wait", run_id=run["id"])
    assert s.poke(ctx()) is False
    run["state"] = "approved"
    assert s.poke(ctx()) is True
    run["state"] = "rejected"
    with pytest.raises(AirflowException, match="not approved"):
        s.poke(ctx())


def test_the_deferred_approval_sensor_follows_the_run_without_cancelling_it(coord):
    run = coord.add_run("awaiting_approval")
    s = TofuflowApprovalSensor(task_id="wait", run_id=run["id"], timeout=600)
    with pytest.raises(TaskDeferred) as d:
        s.execute(ctx())
    trig = d.value.trigger
    assert trig.states == ["approved", "applying", "applied"] and not trig.cancel_on_kill
    assert d.value.timeout.total_seconds() == 600
    assert s.execute_complete(ctx(), {"status": "success", "run_id": run["id"]}) == run["id"]
    with pytest.raises(AirflowException, match="not approved"):
        s.execute_complete(ctx(), {"status": "failed", "message": "rejected"})


def test_tag_values_are_made_acceptable():
    assert tag_value("a\tb") == "a b"
    assert len(tag_value("x" * 300)) == 256
    assert tag_value(None) == ""
