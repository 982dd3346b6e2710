"""The trigger that follows a tofuflow run from the triggerer while the task is deferred."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tofuflow_provider.hooks.tofuflow import FAILED_STATES, TofuflowHook, is_terminal


class TofuflowRunTrigger(BaseTrigger):
    """Polls run ``run_id`` until it reaches one of ``states`` or ends, then yields one event:
    ``{"status": "success" | "failed" | "ended" | "timeout" | "error", "run_id", "state",
    "message", "after"}`` (``after``: the log cursor the task had shown up to, handed back).
    It polls at 0.5 s, then twice as long each time up to ``poll_interval``.
    It has no side effects (the triggerer may run it twice); a user killing the deferred task
    (mark failed, clear) cancels the run through ``on_kill``. ``deadline`` (unix seconds) is the
    task's ``execution_timeout``: the trigger yields ``timeout`` then, and the operator cancels
    the run."""

    def __init__(
        self,
        conn_id: str,
        run_id: str,
        states: list[str],
        poll_interval: float = 5.0,
        deadline: float | None = None,
        cancel_on_kill: bool = True,
        after: str | None = None,
    ):
        super().__init__()
        self.conn_id = conn_id
        self.run_id = run_id
        self.states = list(states)
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.cancel_on_kill = cancel_on_kill
        self.after = after

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "tofuflow_provider.triggers.tofuflow.TofuflowRunTrigger",
            {
                "conn_id": self.conn_id,
                "run_id": self.run_id,
                "states": self.states,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "cancel_on_kill": self.cancel_on_kill,
                "after": self.after,
            },
        )

    def _hook(self) -> TofuflowHook:
        return TofuflowHook(self.conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        event: dict[str, Any] = {"run_id": self.run_id, "after": self.after}
        delay = min(0.5, self.poll_interval)
        try:
            while True:
                run = await hook.aget_run(self.run_id)
                state = run["state"]
                if state in self.states:
                    yield TriggerEvent({**event, "status": "success", "state": state})
                    return
                if is_terminal(run):
                    status = "failed" if state in FAILED_STATES else "ended"
                    msg = run.get("error") or f"the run ended {state}"
                    yield TriggerEvent({**event, "status": status, "state": state, "message": msg})
                    return
                if self.deadline is not None and time.time() >= self.deadline:
                    yield TriggerEvent(
                        {
                            **event,
                            "status": "timeout",
                            "state": state,
                            "message": f"the task timed out with the run {state}",
                        }
                    )
                    return
                if self.deadline is not None:
                    delay = min(delay, max(self.deadline - time.time(), 0.0))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.poll_interval)
        except Exception as e:
            yield TriggerEvent({**event, "status": "error", "state": "", "message": str(e)})

    async def on_kill(self) -> None:
        if self.cancel_on_kill:
            await self._hook().acancel_run(self.run_id, "the Airflow task was killed")
