"""The extra link "tofuflow run": the run's page in tofuflow's web UI."""

from __future__ import annotations

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom


class TofuflowRunLink(BaseOperatorLink):
    """Points at the run the task started or followed (pushed as XCom ``run_url``)."""

    name = "tofuflow run"

    def get_link(self, operator, *, ti_key) -> str:
        return XCom.get_value(ti_key=ti_key, key="run_url") or ""
