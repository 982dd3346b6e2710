"""An ephemeral GPU environment: plan the node pool, apply exactly that plan, train on it using
its outputs, and destroy it whatever happened to the training.

The plan and the apply are two tasks, so a reviewer (or a sensor) can sit between them. The
destroy runs with ``trigger_rule="all_done"``: a failed training still tears the pool down, and
``dagrun_timeout`` bounds how long the environment can live through this DAG (the module labels
its nodes with ``ttl_hours`` for anything that sweeps stragglers).

Connection ``tofuflow_default``: host = the coordinator's URL, password = an API token of a user
with the operator and approver roles on ``ml/**``.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG, task

from tofuflow_provider.operators.tofuflow import (
    TofuflowApplyOperator,
    TofuflowDestroyOperator,
    TofuflowPlanOperator,
)

HERE = os.path.dirname(os.path.realpath(__file__))
MODULE = os.environ.get("TOFUFLOW_GPU_MODULE", os.path.join(HERE, "..", "gpu-pool"))
WORKSPACE = "ml/gpu-{{ ds_nodash }}"
VARIABLES = {"gpu_type": "a100", "gpu_count": 2, "ttl_hours": 4}

with DAG(
    dag_id="gpu_env",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    dagrun_timeout=dt.timedelta(hours=6),
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    tags=["tofuflow", "example"],
) as dag:
    plan = TofuflowPlanOperator(
        task_id="plan",
        workspace=WORKSPACE,
        module_path=MODULE,
        variables=VARIABLES,
        tags={"team": "ml"},
    )
    apply = TofuflowApplyOperator(task_id="apply", run_id="{{ ti.xcom_pull('plan') }}")

    @task
    def train(outputs: dict) -> str:
        # A real DAG would start a job on the pool here (Kubernetes, Ray, SSH ...).
        print(f"training on {outputs['pool_name']} with {outputs['gpu_total']} GPUs")
        return outputs["pool_name"]

    destroy = TofuflowDestroyOperator(
        task_id="destroy",
        workspace=WORKSPACE,
        module_path=MODULE,
        variables=VARIABLES,
        trigger_rule="all_done",
    )

    plan >> apply
    train(apply.output) >> destroy
