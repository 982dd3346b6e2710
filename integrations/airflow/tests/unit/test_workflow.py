"""The workflow operator and its trigger against the in-memory coordinator: packing the
sources, tags, waiting (in the worker and deferred), failing with the reason and the failed
targets, re-attaching on retry, cancel on kill and on the trigger's kill."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from test_operators import FakeTI, ctx

from tofuflow_provider.get_provider_info import get_provider_info
from tofuflow_provider.hooks.tofuflow import workflow_sources
from tofuflow_provider.operators.workflow import TofuflowWorkflowOperator
from tofuflow_provider.triggers.tofuflow import TofuflowWorkflowTrigger

WORKFLOW = """
workflow {
  approval = "auto"
}

stack "net" {
  source    = "./net"
  workspace = "wf/net"
}

# source = "./commented-out"
stack "app" {
  source    = "./app"
  workspace = "wf/app"
  inputs    = { subnet = stack.net.outputs.subnet_id }
}

stack "app2" {
  source = "./app"
  workspace = "wf/app2"
}
"""


@pytest.fixture
def wf_file(tmp_path):
    for name in ("net", "app"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.tf").write_text(f'resource "terraform_data" "{name}" {{}}\n')
        (tmp_path / name / "terraform.tfstate").write_text("{}")
    path = tmp_path / "workflow.hcl"
    path.write_text(WORKFLOW)
    return str(path)


def wf_op(path, **kw):
    kw.setdefault("deferrable", False)
    return TofuflowWorkflowOperator(task_id="fleet", workflow_file=path, poll_interval=0, **kw)


def test_the_sources_are_the_files_string_literals_each_once():
    assert workflow_sources(WORKFLOW) == ["./net", "./app"]


def test_it_packs_every_source_starts_the_workflow_tagged_and_returns_the_targets(coord, wf_file):
    c = ctx()
    c["ti"].task_id = "fleet"
    coord.script["w0001"] = [
        "running",
        {
            "state": "succeeded",
            "targets": [
                {"key": "net", "workspace": "wf/net", "state": "succeeded", "run_id": "r1"},
                {"key": "app", "workspace": "wf/app", "state": "succeeded", "run_id": "r2"},
            ],
        },
    ]
    out = wf_op(wf_file, tags={"team": "ml"}, approval="auto", agent_pool="gpu").execute(c)
    assert len(coord.uploads) == 2
    for data in coord.uploads:
        names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
        assert names == ["main.tf"], names
    body = coord.workflows["w0001"]["body"]
    assert body["definition"] == WORKFLOW and body["file_name"] == "workflow.hcl"
    assert body["bundles"] == {"./net": "sha256:001", "./app": "sha256:002"}
    assert (body["approval"], body["pool"], body["destroy"]) == ("auto", "gpu", False)
    assert body["tags"] == {
        "team": "ml",
        "dag_id": "gpu_env",
        "task_id": "fleet",
        "run_id": "manual__2026-12-07T01:00:00",
        "try_number": "1",
        "logical_date": "2026-12-07T00:00:00+00:00",
    }
    targets = [
        {"key": "net", "workspace": "wf/net", "state": "succeeded", "run_id": "r1"},
        {"key": "app", "workspace": "wf/app", "state": "succeeded", "run_id": "r2"},
    ]
    assert out == {"workflow_run_id": "w0001", "state": "succeeded", "targets": targets}
    assert c["ti"].xcom["workflow_run_id"] == "w0001"
    assert c["ti"].xcom["state"] == "succeeded"
    assert c["ti"].xcom["targets"] == targets
    assert len(coord.calls("POST", "/api/v1/workflow-runs")) == 1
    key = coord.calls("POST", "/api/v1/workflow-runs")[0].headers["idempotency-key"]
    assert key.startswith("airflow-")


def test_a_failed_workflow_fails_the_task_with_the_reason_and_the_failed_targets(coord, wf_file):
    coord.script["w0001"] = [
        {
            "state": "failed",
            "reason": "1 of 3 targets failed, 1 skipped",
            "targets": [
                {"key": "net", "workspace": "wf/net", "state": "failed", "run_id": "r1",
                 "reason": "tofu apply exited 1", "outputs": {"x": 1}},
                {"key": "app", "workspace": "wf/app", "state": "skipped", "run_id": "",
                 "reason": "skipped: net failed"},
            ],
        }
    ]  # fmt: skip
    c = ctx()
    with pytest.raises(AirflowException) as e:
        wf_op(wf_file).execute(c)
    assert str(e.value) == (
        "tofuflow workflow run w0001 failed: 1 of 3 targets failed, 1 skipped; "
        "failed targets: net (wf/net, run r1: tofu apply exited 1)"
    )
    assert c["ti"].xcom["state"] == "failed"
    assert "outputs" not in json.dumps(c["ti"].xcom["targets"])


def test_a_retry_reattaches_to_a_running_or_succeeded_workflow_run(coord, wf_file):
    coord.script["w0001"] = ["running", "succeeded"]
    first = FakeTI(1)
    first.task_id = "fleet"
    wf_op(wf_file).execute(ctx(first))
    second = FakeTI(2)
    second.task_id = "fleet"
    out = wf_op(wf_file).execute(ctx(second))
    assert out["workflow_run_id"] == "w0001"
    assert len(coord.calls("POST", "/api/v1/workflow-runs")) == 1


def test_a_retry_after_a_failed_workflow_run_starts_a_new_one_and_ignores_other_tasks(
    coord, wf_file
):
    coord.add_workflow("running", [], tags={"dag_id": "gpu_env", "task_id": "other"})
    first = FakeTI(1)
    first.task_id = "fleet"
    coord.script["w0002"] = ["failed"]
    with pytest.raises(AirflowException, match="w0002 failed"):
        wf_op(wf_file).execute(ctx(first))
    second = FakeTI(2)
    second.task_id = "fleet"
    coord.script["w0003"] = ["succeeded"]
    assert wf_op(wf_file).execute(ctx(second))["workflow_run_id"] == "w0003"
    assert coord.workflows["w0003"]["tags"]["try_number"] == "2"


def test_it_defers_to_the_workflow_trigger_and_finishes_from_its_event(coord, wf_file):
    op = wf_op(wf_file, deferrable=True)
    with pytest.raises(TaskDeferred) as d:
        op.execute(ctx())
    trigger = d.value.trigger
    assert isinstance(trigger, TofuflowWorkflowTrigger) and trigger.workflow_run_id == "w0001"
    coord.workflows["w0001"]["state"] = "succeeded"
    event = {"workflow_run_id": "w0001", "status": "success", "state": "succeeded"}
    assert op.execute_complete(ctx(), event)["state"] == "succeeded"


def test_a_timeout_event_cancels_the_workflow_run(coord, wf_file):
    op = wf_op(wf_file, deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(ctx())
    event = {"workflow_run_id": "w0001", "status": "timeout", "state": "running", "message": "t"}
    with pytest.raises(AirflowException, match="cancelled it"):
        op.execute_complete(ctx(), event)
    assert coord.workflows["w0001"]["state"] == "cancelled"


def test_on_kill_cancels_the_workflow_run(coord, wf_file):
    coord.script["w0001"] = ["running"]
    op = wf_op(wf_file, deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(ctx())
    op.on_kill()
    assert [r.url.path for r in coord.calls("POST", "/api/v1/workflow-runs/")] == [
        "/api/v1/workflow-runs/w0001/cancel"
    ]


def test_a_missing_source_directory_is_named(coord, tmp_path):
    path = tmp_path / "workflow.hcl"
    path.write_text('stack "x" {\n  source = "./nowhere"\n  workspace = "a/b"\n}\n')
    with pytest.raises(ValueError, match="'./nowhere' is not a directory"):
        wf_op(str(path)).execute(ctx())
    assert not coord.calls("POST", "/api/v1/workflow-runs")


def first_event(trigger):
    async def go():
        async for e in trigger.run():
            return e.payload

    return asyncio.run(go())


def test_the_trigger_serializes_to_its_arguments():
    t = TofuflowWorkflowTrigger("c", "w1", 2.0, 123.0, False)
    path, kwargs = t.serialize()
    assert path == "tofuflow_provider.triggers.tofuflow.TofuflowWorkflowTrigger"
    assert TofuflowWorkflowTrigger(**kwargs).serialize() == (path, kwargs)


def test_the_trigger_polls_until_the_workflow_run_ends(coord):
    w = coord.add_workflow("running", [])
    coord.script[w["id"]] = ["running", "running", "succeeded"]
    e = first_event(TofuflowWorkflowTrigger("tofuflow_default", w["id"], 0))
    assert (e["workflow_run_id"], e["status"], e["state"]) == (w["id"], "success", "succeeded")
    assert len(coord.calls("GET", f"/api/v1/workflow-runs/{w['id']}")) == 3


def test_the_trigger_reports_a_failure_with_the_reason(coord):
    w = coord.add_workflow("failed", [], reason="net failed")
    e = first_event(TofuflowWorkflowTrigger("tofuflow_default", w["id"], 0))
    assert (e["status"], e["message"]) == ("failed", "net failed")


def test_the_trigger_times_out_at_the_deadline(coord):
    w = coord.add_workflow("running", [])
    e = first_event(TofuflowWorkflowTrigger("tofuflow_default", w["id"], 0.01, deadline=0.0))
    assert e["status"] == "timeout"


def test_the_triggers_kill_cancels_the_workflow_run(coord):
    w = coord.add_workflow("running", [])
    asyncio.run(TofuflowWorkflowTrigger("tofuflow_default", w["id"], 0).on_kill())
    assert coord.workflows[w["id"]]["state"] == "cancelled"


def test_the_provider_info_names_the_workflow_operator():
    mods = get_provider_info()["operators"][0]["python-modules"]
    assert "tofuflow_provider.operators.workflow" in mods


def test_a_start_whose_answer_is_lost_is_retried_with_its_key_and_starts_one(coord, wf_file):
    coord.script["w0001"] = ["succeeded"]
    coord.lose_answer_once.add(("POST", "/api/v1/workflow-runs"))
    ti = FakeTI(1)
    ti.task_id = "fleet"
    assert wf_op(wf_file).execute(ctx(ti))["workflow_run_id"] == "w0001"
    posts = coord.calls("POST", "/api/v1/workflow-runs")
    assert len(posts) == 2, "the start is sent again after its answer was lost"
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert list(coord.workflows) == ["w0001"], "and one workflow run started"


def test_a_retry_looks_for_earlier_workflow_runs_by_the_task_instances_tags(coord, wf_file):
    ti = FakeTI(2)
    ti.task_id = "fleet"
    coord.script["w0001"] = ["succeeded"]
    wf_op(wf_file).execute(ctx(ti))
    listed = coord.calls("GET", "/api/v1/workflow-runs")[0]
    tags = set(listed.url.params.get_list("tag"))
    assert {"dag_id=gpu_env", "task_id=fleet"} <= tags, tags
    assert not any(t.startswith("try_number=") for t in tags)


def test_a_start_without_a_key_is_not_retried_over_a_broken_connection(coord):
    import httpx

    from tofuflow_provider.hooks.tofuflow import TofuflowHook

    coord.fail_next_connects = 1
    with pytest.raises(httpx.ConnectError):
        TofuflowHook().start_workflow("stack {}", {"./a": "sha256:1"})
    assert not coord.workflows
