"""A fleet-wide rollout: the same module to several regions' workspaces, a canary first, then
the rest in parallel (at most ``max_active_tis_per_dag`` at once), each a plan, a drift report
and an apply of exactly that plan. A failed canary stops the rollout."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from tofuflow_provider.operators.tofuflow import (
    TofuflowApplyOperator,
    TofuflowPlanOperator,
)

HERE = os.path.dirname(os.path.realpath(__file__))
MODULE = os.environ.get("TOFUFLOW_GPU_MODULE", os.path.join(HERE, "..", "gpu-pool"))
CANARY = "eu-west-1"
REGIONS = ["eu-central-1", "us-east-1", "ap-northeast-1"]

with DAG(
    dag_id="fleet_rollout",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 1},
    tags=["tofuflow", "example"],
) as dag:

    def step(region: str):
        name = region.replace("-", "_")
        plan = TofuflowPlanOperator(
            task_id=f"plan_{name}",
            workspace=f"fleet/{region}",
            module_path=MODULE,
            variables={"region": region, "gpu_type": "l4", "gpu_count": 1},
            tags={"rollout": "{{ run_id }}"},
            max_active_tis_per_dag=2,
        )
        apply = TofuflowApplyOperator(
            task_id=f"apply_{name}",
            run_id=f"{{{{ ti.xcom_pull('plan_{name}') }}}}",
            max_active_tis_per_dag=2,
        )
        plan >> apply
        return plan, apply

    _, canary_done = step(CANARY)
    for region in REGIONS:
        first, _ = step(region)
        canary_done >> first
