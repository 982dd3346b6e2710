"""A workflow as one Airflow task: the stacks of ``fleet_workflow/workflow.hcl`` (a network
per region, then an app per region reading its network's subnet) run as one tofuflow workflow
run, which orders them and passes the outputs. The next task reads the targets from XCom."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG, task

from tofuflow_provider.operators.workflow import TofuflowWorkflowOperator

HERE = os.path.dirname(os.path.realpath(__file__))

with DAG(
    dag_id="fleet_workflow",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 1},
    tags=["tofuflow", "example"],
) as dag:
    fleet = TofuflowWorkflowOperator(
        task_id="fleet",
        workflow_file=os.path.join(HERE, "fleet_workflow", "workflow.hcl"),
        tags={"change": "{{ run_id }}"},
        poll_interval=2,
    )

    @task
    def report(result: dict) -> list[str]:
        """The app runs, one per region (their outputs are in tofuflow, not in XCom)."""
        apps = [t for t in result["targets"] if t["key"].startswith("app")]
        for t in apps:
            print(f"{t['key']}: {t['workspace']} {t['state']} (run {t['run_id']})")
        return sorted(t["run_id"] for t in apps)

    report(fleet.output)
