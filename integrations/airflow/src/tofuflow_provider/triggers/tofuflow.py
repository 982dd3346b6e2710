"""The triggers that follow a tofuflow run or workflow run from the triggerer while the task
is deferred."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from tofuflow_provider.hooks.tofuflow import (
    FAILED_STATES,
    TERMINAL_STATES,
    WORKFLOW_FAILED_STATES,
    WORKFLOW_TERMINAL_STATES,
    TofuflowHook,
    is_terminal,
)


class TofuflowRunTrigger(BaseTrigger):
    """Follows run ``run_id`` until it reaches one of ``states`` or ends, then yields one event:
    ``{"status": "success" | "failed" | "ended" | "timeout" | "error", "run_id", "state",
    "message", "after"}`` (``after``: the log cursor shown up to, by the task or the trigger).
    When the states it waits for are final ones (an apply, a destroy) it follows the run's
    log stream (SSE), writing tofu's lines to its log as they come, to the stream's ``end``;
    when it waits for a state on the way (a plan awaiting approval, which the stream does not
    mark) it polls the run at 0.5 s, then twice as long each time up to ``poll_interval``.
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
        try:
            follow = self._stream if set(self.states) <= TERMINAL_STATES else self._poll
            if self.deadline is None:
                event = await follow(hook)
            else:
                try:
                    left = max(self.deadline - time.time(), 0.0)
                    event = await asyncio.wait_for(follow(hook), timeout=left)
                except asyncio.TimeoutError:
                    event = self._event(await hook.aget_run(self.run_id), timed_out=True)
        except Exception as e:
            event = {"run_id": self.run_id, "after": self.after, "status": "error"}
            event.update({"state": "", "message": str(e)})
        yield TriggerEvent(event)

    def _event(self, run: dict, timed_out: bool = False) -> dict[str, Any] | None:
        """The event for the run as it stands, or None while it goes on."""
        state = run["state"]
        event: dict[str, Any] = {"run_id": self.run_id, "after": self.after, "state": state}
        if state in self.states:
            return {**event, "status": "success"}
        if is_terminal(run):
            status = "failed" if state in FAILED_STATES else "ended"
            return {**event, "status": status, "message": run.get("error") or f"ended {state}"}
        if timed_out:
            return {**event, "status": "timeout", "message": f"the task timed out, run {state}"}
        return None

    async def _poll(self, hook: TofuflowHook) -> dict[str, Any]:
        """Polls the run: at 0.5 s, then twice as long each time up to ``poll_interval``."""
        delay = min(0.5, self.poll_interval)
        while (event := self._event(await hook.aget_run(self.run_id))) is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_interval)
        return event

    async def _stream(self, hook: TofuflowHook) -> dict[str, Any]:
        """Follows the run's log stream (SSE) to its ``end`` event, writing tofu's lines to
        this log (Airflow shows a trigger's log in the task's); reconnects from the last line
        after a dropped connection, falls back to polling after five drops in a row."""
        drops = 0
        while True:
            try:
                async for cursor, kind, data in hook.astream_log(self.run_id, self.after):
                    if kind == "log":
                        line = json.loads(data)
                        self.log.info("[%s] %s", line.get("phase", ""), line.get("line", ""))
                        self.after = cursor
                        drops = 0
                    elif kind == "end":
                        break
            except httpx.TransportError as e:
                self.log.warning("the log stream of run %s dropped: %s", self.run_id, e)
            event = self._event(await hook.aget_run(self.run_id))
            if event is not None:
                return event
            # The stream closed before the run ended: reconnect after the last line seen.
            drops += 1
            if drops > 5:
                self.log.warning("the log stream keeps closing: polling run %s", self.run_id)
                return await self._poll(hook)
            await asyncio.sleep(min(0.5 * 2.0**drops, 30.0))

    async def on_kill(self) -> None:
        if self.cancel_on_kill:
            await self._hook().acancel_run(self.run_id, "the Airflow task was killed")


class TofuflowWorkflowTrigger(BaseTrigger):
    """Follows workflow run ``workflow_run_id`` until it ends, then yields one event:
    ``{"status": "success" | "failed" | "timeout" | "error", "workflow_run_id", "state",
    "message"}``. Workflow runs have no event stream: it polls ``GET
    /api/v1/workflow-runs/{id}`` at 0.5 s, then twice as long each time up to
    ``poll_interval`` (a failed poll is retried by the hook with its own backoff). It has no
    side effects; a user killing the deferred task cancels the workflow run through
    ``on_kill``. ``deadline`` (unix seconds) is the task's ``execution_timeout``: the trigger
    yields ``timeout`` then, and the operator cancels the workflow run."""

    def __init__(
        self,
        conn_id: str,
        workflow_run_id: str,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        cancel_on_kill: bool = True,
    ):
        super().__init__()
        self.conn_id = conn_id
        self.workflow_run_id = workflow_run_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.cancel_on_kill = cancel_on_kill

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "tofuflow_provider.triggers.tofuflow.TofuflowWorkflowTrigger",
            {
                "conn_id": self.conn_id,
                "workflow_run_id": self.workflow_run_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    def _hook(self) -> TofuflowHook:
        return TofuflowHook(self.conn_id)

    def _event(self, w: dict, timed_out: bool = False) -> dict[str, Any] | None:
        state = w["state"]
        event: dict[str, Any] = {"workflow_run_id": self.workflow_run_id, "state": state}
        if state in WORKFLOW_TERMINAL_STATES:
            status = "failed" if state in WORKFLOW_FAILED_STATES else "success"
            return {**event, "status": status, "message": w.get("reason") or f"ended {state}"}
        if timed_out:
            return {**event, "status": "timeout", "message": f"the task timed out, {state}"}
        return None

    async def _poll(self, hook: TofuflowHook) -> dict[str, Any]:
        delay = min(0.5, self.poll_interval)
        last = ""
        while True:
            w = await hook.aget_workflow_run(self.workflow_run_id)
            event = self._event(w)
            if event is not None:
                return event
            done = sum(1 for t in w.get("targets") or [] if t.get("state") == "succeeded")
            now = f"{w['state']}: {done}/{len(w.get('targets') or [])} targets succeeded"
            if now != last:
                self.log.info("workflow run %s %s", self.workflow_run_id, now)
                last = now
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_interval)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        try:
            if self.deadline is None:
                event = await self._poll(hook)
            else:
                try:
                    left = max(self.deadline - time.time(), 0.0)
                    event = await asyncio.wait_for(self._poll(hook), timeout=left)
                except asyncio.TimeoutError:
                    w = await hook.aget_workflow_run(self.workflow_run_id)
                    event = self._event(w, timed_out=True)
        except Exception as e:
            event = {"workflow_run_id": self.workflow_run_id, "status": "error", "state": ""}
            event["message"] = str(e)
        yield TriggerEvent(event)

    async def on_kill(self) -> None:
        if self.cancel_on_kill:
            await self._hook().acancel_workflow_run(self.workflow_run_id)
