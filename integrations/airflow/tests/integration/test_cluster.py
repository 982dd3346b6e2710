"""The provider against a real tofuflow cluster and a real Airflow (started by the Rust test
``tests/tests/airflow.rs``, which passes the coordinator's URL and tokens in the environment).

Each DAG runs with ``airflow dags test`` in an ``AIRFLOW_HOME`` of its own session (SQLite
metadata database, migrated once per Airflow version and copied from a cache after that);
the outcome is read from the metadata database, the task logs from the command's output,
and the runs from tofuflow's API.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

URL = os.environ.get("TOFUFLOW_URL", "")
TOKEN = os.environ.get("TOFUFLOW_AIRFLOW_TOKEN", "")
ADMIN = os.environ.get("TOFUFLOW_ADMIN_TOKEN", "")
CANARY = "cloud-canary-4d1e9b7a2c"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]

pytestmark = pytest.mark.skipif(not URL, reason="needs TOFUFLOW_URL (tests/tests/airflow.rs)")


def api(path: str, **params) -> dict:
    r = httpx.get(
        f"{URL}{path}", params=params, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
    )
    r.raise_for_status()
    return r.json()


def runs_tagged(**tags) -> list[dict]:
    params = [("tag", f"{k}={v}") for k, v in tags.items()] + [("limit", "100")]
    r = httpx.get(f"{URL}/api/v1/runs", params=params, headers={"Authorization": f"Bearer {ADMIN}"})
    r.raise_for_status()
    return r.json()["runs"]


def run_log(run_id: str) -> str:
    return "\n".join(line["line"] for line in api(f"/api/v1/runs/{run_id}/logs")["lines"])


@pytest.fixture(scope="session")
def airflow_env():
    """An AIRFLOW_HOME with the example and test DAGs and a migrated SQLite database."""
    home = Path(tempfile.mkdtemp(prefix="tofuflow-airflow-"))
    dags = home / "dags"
    dags.mkdir()
    for f in [*(REPO / "examples" / "airflow").glob("*.py"), *(HERE / "dags").glob("*.py")]:
        (dags / f.name).symlink_to(f)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join([str(REPO / "integrations/airflow/src")]),
            "TOFUFLOW_GPU_MODULE": str(REPO / "examples" / "gpu-pool"),
            "TOFUFLOW_LONG_APPLY": str(REPO / "examples" / "long-apply"),
            "TOFUFLOW_TEST_MODULES": str(HERE / "modules"),
            "AIRFLOW_CONN_TOFUFLOW_DEFAULT": json.dumps(
                {"conn_type": "tofuflow", "host": URL, "password": TOKEN}
            ),
            "AIRFLOW_CONN_CLOUD_CREDS": json.dumps(
                {"conn_type": "generic", "login": "deployer", "password": CANARY}
            ),
        }
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    cached = Path(sys.prefix) / "tofuflow-airflow-empty.db"
    started = time.monotonic()
    if cached.exists():
        shutil.copy(cached, home / "airflow.db")
        how = "copied from the cache"
    else:
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        # Another suite may share the virtualenv: the cache appears whole or not at all.
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        shutil.copy(home / "airflow.db", partial)
        os.replace(partial, cached)
        how = "migrated"
    print(f"metadata database {how} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    yield {"env": env, "home": home, "airflow": airflow}
    shutil.rmtree(home, ignore_errors=True)


class DagRun:
    def __init__(self, env: dict, dag_id: str, proc: subprocess.CompletedProcess):
        self.dag_id = dag_id
        self.output = proc.stdout + proc.stderr
        db = sqlite3.connect(Path(env["home"]) / "airflow.db")
        self.run_id, self.state = db.execute(
            "select run_id, state from dag_run where dag_id = ? order by id desc limit 1",
            (dag_id,),
        ).fetchone()
        self.tasks = dict(
            db.execute(
                "select task_id, state from task_instance where dag_id = ? and run_id = ?",
                (dag_id, self.run_id),
            ).fetchall()
        )
        self.xcom_text = "\n".join(
            f"{t} {k} {v}"
            for t, k, v in db.execute(
                "select task_id, key, value from xcom where dag_id = ? and run_id = ?",
                (dag_id, self.run_id),
            ).fetchall()
        )
        db.close()

    def xcom(self, task_id: str, key: str = "return_value"):
        for line in self.xcom_text.splitlines():
            t, k, v = line.split(" ", 2)
            if (t, k) == (task_id, key):
                return json.loads(v)
        return None


def dags_test(airflow_env, dag_id: str, timeout: float = 300) -> DagRun:
    started = time.monotonic()
    proc = subprocess.run(
        [airflow_env["airflow"], "dags", "test", dag_id],
        env=airflow_env["env"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    took = time.monotonic() - started
    print(f"airflow dags test {dag_id}: exit {proc.returncode} in {took:.1f}s", file=sys.stderr)
    env = {"home": airflow_env["home"]}
    run = DagRun(env, dag_id, proc)
    if os.environ.get("TOFUFLOW_AIRFLOW_VERBOSE"):
        print(run.output, file=sys.stderr)
    return run


def test_gpu_env_plans_applies_trains_and_destroys_deferred_and_tagged(airflow_env):
    r = dags_test(airflow_env, "gpu_env")
    assert r.state == "success", r.output[-6000:]
    assert r.tasks == {
        "plan": "success",
        "apply": "success",
        "train": "success",
        "destroy": "success",
    }
    runs = runs_tagged(dag_id="gpu_env", run_id=r.run_id)
    by_task = {x["tags"]["task_id"]: x for x in runs}
    assert set(by_task) == {"plan", "destroy"}, runs
    plan, destroy = by_task["plan"], by_task["destroy"]
    assert plan["state"] == "applied" and plan["kind"] == "plan_and_apply"
    assert destroy["state"] == "applied" and destroy["kind"] == "destroy"
    for x in runs:
        assert x["tags"]["try_number"] == "1"
        assert x["tags"]["logical_date"], x["tags"]
        assert x["source"] == "airflow" and x["submitted_by"] == "airflow"
    assert r.xcom("plan") == plan["id"]
    assert r.xcom("plan", "plan_summary")["add"] == 3
    outputs = r.xcom("apply")
    assert outputs["pool_name"] == "gpu-a100-eu-west-1" and outputs["gpu_total"] == 2
    assert r.xcom("train") == "gpu-a100-eu-west-1"
    transitions = api(f"/api/v1/runs/{plan['id']}")["transitions"]
    approvals = [t for t in transitions if t["to"] == "approved"]
    assert len(approvals) == 1 and approvals[0]["actor"] == "airflow", transitions
    # The deferrable path: each waiting task went through the trigger.
    assert r.output.count("running trigger in line") >= 3, r.output[-6000:]
    # tofu's own lines and the run's page are in the task log.
    assert "Apply complete!" in r.output
    # The apply's lines came through the trigger, which follows the run's log stream.
    streamed = [x for x in r.output.splitlines() if "TofuflowRunTrigger" in x and "[apply]" in x]
    assert any("Apply complete!" in x for x in streamed), r.output[-6000:]
    assert f"/ui/#/runs/{plan['id']}" in r.output
    assert r.xcom("plan", "_link_TofuflowRunLink").endswith(f"/ui/#/runs/{plan['id']}")


def test_fleet_rollout_applies_every_region_canary_first(airflow_env):
    r = dags_test(airflow_env, "fleet_rollout")
    assert r.state == "success", r.output[-6000:]
    runs = runs_tagged(dag_id="fleet_rollout", run_id=r.run_id)
    assert sorted(x["workspace"] for x in runs) == [
        "fleet/ap-northeast-1",
        "fleet/eu-central-1",
        "fleet/eu-west-1",
        "fleet/us-east-1",
    ]
    assert all(x["state"] == "applied" and x["tags"]["rollout"] == r.run_id for x in runs)
    canary = next(x for x in runs if x["workspace"] == "fleet/eu-west-1")
    assert all(canary["updated_unix_ms"] <= x["created_unix_ms"] for x in runs if x is not canary)


def test_plan_and_apply_in_the_worker(airflow_env):
    r = dags_test(airflow_env, "tofuflow_sync")
    assert r.state == "success", r.output[-6000:]
    (run,) = runs_tagged(dag_id="tofuflow_sync", run_id=r.run_id)
    assert run["state"] == "applied" and run["tags"]["task_id"] == "plan"
    assert r.xcom("apply")["gpu_total"] == 1
    assert "Apply complete!" in r.output


def test_a_failing_run_fails_the_task_with_tofuflows_reason(airflow_env):
    r = dags_test(airflow_env, "tofuflow_failing")
    assert r.state == "failed" and r.tasks == {"migrate": "failed"}, r.output[-6000:]
    (run,) = runs_tagged(dag_id="tofuflow_failing", run_id=r.run_id)
    assert run["state"] == "failed" and run["error"], run
    assert f"tofuflow run {run['id']} failed: {run['error']}" in r.output
    assert "migration 42 failed: table locked" in r.output


def wait_for(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_a_timed_out_task_cancels_its_run_deferred_or_not(airflow_env):
    r = dags_test(airflow_env, "tofuflow_timeout")
    assert r.state == "failed", r.output[-6000:]
    assert r.tasks == {"slow_deferred": "failed", "slow_worker": "failed"}
    runs = runs_tagged(dag_id="tofuflow_timeout", run_id=r.run_id)
    assert len(runs) == 2
    for run in runs:
        ended = wait_for(
            f"run {run['id']} to end",
            lambda run=run: (
                (x := api(f"/api/v1/runs/{run['id']}"))["state"]
                in ("cancelled", "failed", "interrupted")
                and x
            ),
        )
        assert ended["state"] == "cancelled", ended
        assert "applying" in [t["from"] for t in ended["transitions"]], ended["transitions"]


def test_a_killed_task_cancels_its_run(airflow_env):
    env = airflow_env["env"]
    cmd = [airflow_env["airflow"], "tasks", "test", "tofuflow_timeout", "slow_worker"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        run = wait_for(
            "the task's run to apply",
            lambda: next(
                (
                    x
                    for x in runs_tagged(dag_id="tofuflow_timeout", task_id="slow_worker")
                    if x["state"] == "applying"
                ),
                None,
            ),
        )
        proc.terminate()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    ended = wait_for(
        "the run to be cancelled",
        lambda: (x := api(f"/api/v1/runs/{run['id']}"))["state"] != "applying" and x,
    )
    assert ended["state"] == "cancelled", ended


def test_a_task_retried_after_its_worker_died_follows_the_same_apply(airflow_env):
    env, airflow = airflow_env["env"], airflow_env["airflow"]
    for cmd in (["dags", "reserialize"], ["dags", "trigger", "tofuflow_retry", "-r", "retry_1"]):
        subprocess.run([airflow, *cmd], env=env, check=True, capture_output=True)
    task = [airflow, "tasks", "test", "tofuflow_retry", "apply_once", "retry_1"]
    first = subprocess.Popen(task, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = wait_for(
            "the first try's run to apply",
            lambda: next(
                (x for x in runs_tagged(dag_id="tofuflow_retry") if x["state"] == "applying"),
                None,
            ),
        )
    finally:
        first.kill()  # the worker dies: no on_kill, the apply goes on
        first.wait()
    second = subprocess.run(task, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, (second.stdout + second.stderr)[-6000:]
    assert f"re-attaches to run {run['id']}" in second.stdout + second.stderr
    (only,) = runs_tagged(dag_id="tofuflow_retry", run_id="retry_1")
    assert only["id"] == run["id"] and only["state"] == "applied"
    transitions = api(f"/api/v1/runs/{run['id']}")["transitions"]
    assert [t["to"] for t in transitions].count("applying") == 1, transitions


def test_a_credential_from_a_connection_reaches_the_run_and_no_log_or_xcom(airflow_env):
    r = dags_test(airflow_env, "tofuflow_secrets")
    assert r.state == "success", r.output[-6000:]
    (run,) = runs_tagged(dag_id="tofuflow_secrets", run_id=r.run_id)
    assert run["sensitive_variables"] == ["api_key"]
    full = httpx.get(
        f"{URL}/api/v1/runs/{run['id']}",
        params={"show_sensitive": "true"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    ).json()
    assert full["outputs"]["api_key"]["value"] == CANARY, "the run received the credential"
    outputs = r.xcom("configure")
    assert outputs == {"key_length": len(CANARY)}, outputs
    assert CANARY not in r.output
    assert CANARY not in r.xcom_text
    log = run_log(run["id"])
    assert CANARY not in log
    assert CANARY not in json.dumps(run)
    # env_from_connections: the run's own environment reached tofu, masked in its log.
    assert f"token-length {len(CANARY)}" in log, log[-3000:]
    assert "configured client in eu" in log, log[-3000:]
    assert "token (sensitive)" in log, log[-3000:]


def workflow_runs_tagged(**tags) -> list[dict]:
    return [
        w
        for w in api("/api/v1/workflow-runs", limit=500)
        if all(w["tags"].get(k) == v for k, v in tags.items())
    ]


def test_a_workflow_passes_an_output_between_stacks_deferred_and_xcom_shows_the_targets(
    airflow_env,
):
    r = dags_test(airflow_env, "fleet_workflow")
    assert r.state == "success", r.output[-6000:]
    assert r.tasks == {"fleet": "success", "report": "success"}
    (w,) = workflow_runs_tagged(dag_id="fleet_workflow", run_id=r.run_id)
    assert w["state"] == "succeeded", w
    assert w["tags"]["task_id"] == "fleet" and w["tags"]["try_number"] == "1"
    assert w["tags"]["change"] == r.run_id
    result = r.xcom("fleet")
    assert result["workflow_run_id"] == w["id"] and result["state"] == "succeeded"
    assert r.xcom("fleet", "workflow_run_id") == w["id"]
    assert r.xcom("fleet", "state") == "succeeded"
    targets = r.xcom("fleet", "targets")
    assert targets == result["targets"]
    assert sorted(t["workspace"] for t in targets) == [
        "wfdemo/app-eu",
        "wfdemo/app-us",
        "wfdemo/net-eu",
        "wfdemo/net-us",
    ]
    for t in targets:
        assert set(t) == {"key", "workspace", "state", "run_id"}, t
        assert t["state"] == "succeeded" and t["run_id"], t
    # Every run of the workflow run carries the task's tags and the workflow run's.
    runs = runs_tagged(dag_id="fleet_workflow", run_id=r.run_id)
    assert sorted(x["id"] for x in runs) == sorted(t["run_id"] for t in targets)
    assert all(x["tags"]["workflow_run"] == w["id"] for x in runs)
    # The app read its network's real output.
    app_eu = next(t for t in targets if t["workspace"] == "wfdemo/app-eu")
    outputs = api(f"/api/v1/runs/{app_eu['run_id']}")["outputs"]
    assert outputs["endpoint"]["value"] == "https://subnet-eu.example", outputs
    # The deferrable path: the task waited in the triggerer.
    assert "running trigger in line" in r.output, r.output[-6000:]
    apps = sorted(t["run_id"] for t in targets if t["workspace"].startswith("wfdemo/app"))
    assert r.xcom("report") == apps


def test_a_failing_workflow_fails_the_task_with_the_reason_and_the_failed_target(airflow_env):
    r = dags_test(airflow_env, "tofuflow_workflow_failing")
    assert r.state == "failed" and r.tasks == {"migrate_all": "failed"}, r.output[-6000:]
    (w,) = workflow_runs_tagged(dag_id="tofuflow_workflow_failing", run_id=r.run_id)
    assert w["state"] == "failed" and w["reason"], w
    by_ws = {t["workspace"]: t for t in w["targets"]}
    assert by_ws["afwf/migrate"]["state"] == "failed"
    assert by_ws["afwf/after"]["state"] == "skipped"
    assert by_ws["afwf/side"]["state"] == "succeeded"
    migrate = by_ws["afwf/migrate"]
    assert f"tofuflow workflow run {w['id']} failed: {w['reason']}" in r.output, r.output[-6000:]
    assert f"failed targets: {migrate['key']} (afwf/migrate, run {migrate['run_id']}" in r.output
    assert r.xcom("migrate_all", "state") == "failed"
    assert r.xcom("migrate_all", "workflow_run_id") == w["id"]


def test_a_timed_out_workflow_task_cancels_its_workflow_run(airflow_env):
    r = dags_test(airflow_env, "tofuflow_workflow_timeout")
    assert r.state == "failed" and r.tasks == {"slow_workflow": "failed"}, r.output[-6000:]
    (w,) = workflow_runs_tagged(dag_id="tofuflow_workflow_timeout", run_id=r.run_id)
    assert "cancelled it" in r.output, r.output[-6000:]
    ended = wait_for(
        f"workflow run {w['id']} to end",
        lambda: (x := api(f"/api/v1/workflow-runs/{w['id']}"))["state"] != "running" and x,
    )
    assert ended["state"] == "cancelled", ended
    (target,) = ended["targets"]
    run = wait_for(
        "the target's run to be stopped",
        lambda: (x := api(f"/api/v1/runs/{target['run_id']}"))["state"] != "applying" and x,
    )
    assert run["state"] == "cancelled", run
    assert "applying" in [t["from"] for t in run["transitions"]], run["transitions"]


def test_a_workflow_task_retried_after_its_worker_died_follows_the_same_workflow_run(
    airflow_env,
):
    env, airflow = airflow_env["env"], airflow_env["airflow"]
    trigger = ["dags", "trigger", "tofuflow_workflow_retry", "-r", "wf_retry_1"]
    for cmd in (["dags", "reserialize"], trigger):
        subprocess.run([airflow, *cmd], env=env, check=True, capture_output=True)
    task = [airflow, "tasks", "test", "tofuflow_workflow_retry", "workflow_once", "wf_retry_1"]
    first = subprocess.Popen(task, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = wait_for(
            "the first try's workflow to apply",
            lambda: next(
                (
                    x
                    for x in runs_tagged(dag_id="tofuflow_workflow_retry")
                    if x["state"] == "applying"
                ),
                None,
            ),
        )
    finally:
        first.kill()  # the worker dies: no on_kill, the workflow run goes on
        first.wait()
    second = subprocess.run(task, env=env, capture_output=True, text=True, timeout=300)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-6000:]
    (w,) = workflow_runs_tagged(dag_id="tofuflow_workflow_retry", run_id="wf_retry_1")
    assert f"re-attaches to workflow run {w['id']}" in out, out[-6000:]
    assert w["state"] == "succeeded" and run["tags"]["workflow_run"] == w["id"], w
    assert [t["run_id"] for t in w["targets"]] == [run["id"]]
