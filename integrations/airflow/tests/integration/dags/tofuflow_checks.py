"""DAGs the integration tests run against a real tofuflow cluster: plan and apply in the worker
(not deferred), a failing apply, tasks that time out (deferred and not), a credential
from an Airflow connection, a failing workflow (followed in the worker), a deferred workflow
that times out, and a workflow whose task is retried after its worker died."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from tofuflow_provider.operators.tofuflow import (
    TofuflowApplyOperator,
    TofuflowPlanOperator,
    TofuflowRunOperator,
)
from tofuflow_provider.operators.workflow import TofuflowWorkflowOperator

MODULES = os.environ["TOFUFLOW_TEST_MODULES"]
LONG_APPLY = os.environ["TOFUFLOW_LONG_APPLY"]
START = dt.datetime(2026, 1, 1)


def module(name: str) -> str:
    return os.path.join(MODULES, name)


with DAG(dag_id="tofuflow_sync", schedule=None, start_date=START, catchup=False):
    plan = TofuflowPlanOperator(
        task_id="plan",
        workspace="af/sync",
        module_path=os.environ["TOFUFLOW_GPU_MODULE"],
        variables={"gpu_count": 1},
        deferrable=False,
        poll_interval=0.5,
    )
    apply = TofuflowApplyOperator(
        task_id="apply",
        run_id="{{ ti.xcom_pull('plan') }}",
        deferrable=False,
        poll_interval=0.5,
    )
    plan >> apply

with DAG(dag_id="tofuflow_failing", schedule=None, start_date=START, catchup=False):
    TofuflowRunOperator(
        task_id="migrate", workspace="af/failing", module_path=module("failing"), poll_interval=0.5
    )

with DAG(dag_id="tofuflow_timeout", schedule=None, start_date=START, catchup=False):
    for deferrable in (True, False):
        TofuflowRunOperator(
            task_id=f"slow_{'deferred' if deferrable else 'worker'}",
            workspace=f"af/slow-{'deferred' if deferrable else 'worker'}",
            module_path=LONG_APPLY,
            variables={"seconds": 600},
            deferrable=deferrable,
            poll_interval=0.5,
            execution_timeout=dt.timedelta(seconds=25),
        )

with DAG(dag_id="tofuflow_secrets", schedule=None, start_date=START, catchup=False):
    TofuflowRunOperator(
        task_id="configure",
        workspace="af/secrets",
        module_path=module("secret"),
        variables_from_connections={"api_key": "cloud_creds.password"},
        env_from_connections={"CLOUD_TOKEN": "cloud_creds.password"},
        env={"CLOUD_REGION": "eu"},
        poll_interval=0.5,
    )

with DAG(dag_id="tofuflow_retry", schedule=None, start_date=START, catchup=False):
    TofuflowRunOperator(
        task_id="apply_once",
        workspace="af/retry",
        module_path=LONG_APPLY,
        variables={"seconds": 8},
        deferrable=False,
        poll_interval=0.5,
    )

with DAG(dag_id="tofuflow_workflow_failing", schedule=None, start_date=START, catchup=False):
    TofuflowWorkflowOperator(
        task_id="migrate_all",
        workflow_file=module("failing-workflow.hcl"),
        deferrable=False,
        poll_interval=0.5,
    )

with DAG(dag_id="tofuflow_workflow_timeout", schedule=None, start_date=START, catchup=False):
    TofuflowWorkflowOperator(
        task_id="slow_workflow",
        workflow_file=module("slow-workflow.hcl"),
        poll_interval=0.5,
        execution_timeout=dt.timedelta(seconds=25),
    )

with DAG(dag_id="tofuflow_workflow_retry", schedule=None, start_date=START, catchup=False):
    TofuflowWorkflowOperator(
        task_id="workflow_once",
        workflow_file=module("retry-workflow.hcl"),
        deferrable=False,
        poll_interval=0.5,
    )
