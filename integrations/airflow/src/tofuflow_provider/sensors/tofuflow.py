"""A sensor that waits for a human's decision on a plan in tofuflow."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException

from tofuflow_provider.hooks.tofuflow import FAILED_STATES, TofuflowHook, is_terminal
from tofuflow_provider.links.tofuflow import TofuflowRunLink
from tofuflow_provider.triggers.tofuflow import TofuflowRunTrigger

APPROVED = ["approved", "applying", "applied"]


class TofuflowApprovalSensor(BaseSensorOperator):
    """Waits until run ``run_id``'s plan is approved in tofuflow (by a human with the approver
    role, in the web UI or the CLI). Fails when it is rejected, cancelled or expires; a plan
    with no changes needs no approval and succeeds. Deferrable by default: the wait costs no
    worker slot."""

    template_fields: Sequence[str] = ("run_id",)
    operator_extra_links = (TofuflowRunLink(),)

    def __init__(
        self,
        *,
        run_id: str,
        tofuflow_conn_id: str = TofuflowHook.default_conn_name,
        deferrable: bool = True,
        **kwargs: Any,
    ):
        kwargs.setdefault("poke_interval", 10)
        super().__init__(**kwargs)
        self.run_id = run_id
        self.tofuflow_conn_id = tofuflow_conn_id
        self.deferrable = deferrable

    def _decided(self, run: dict) -> bool:
        if run["state"] in APPROVED:
            return True
        if run["state"] in FAILED_STATES:
            raise AirflowException(
                f"tofuflow run {run['id']} was not approved: it is {run['state']}"
            )
        return is_terminal(run)

    def poke(self, context: Any) -> bool:
        return self._decided(TofuflowHook(self.tofuflow_conn_id).get_run(self.run_id))

    def execute(self, context: Any) -> Any:
        hook = TofuflowHook(self.tofuflow_conn_id)
        url = hook.web_url(self.run_id)
        context["ti"].xcom_push(key="run_url", value=url)
        context["ti"].xcom_push(key=TofuflowRunLink().xcom_key, value=url)
        self.log.info("waiting for approval of tofuflow run %s: %s", self.run_id, url)
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return self.run_id
        self.defer(
            trigger=TofuflowRunTrigger(
                conn_id=self.tofuflow_conn_id,
                run_id=self.run_id,
                states=APPROVED,
                poll_interval=float(self.poke_interval),
                cancel_on_kill=False,
            ),
            method_name="execute_complete",
            timeout=datetime.timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict) -> str:
        if event["status"] in ("success", "ended"):
            return self.run_id
        raise AirflowException(
            f"tofuflow run {self.run_id} was not approved: {event.get('message', event)}"
        )
