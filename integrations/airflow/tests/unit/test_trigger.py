"""The trigger: follows a run with the async hook and yields one event."""

from __future__ import annotations

import asyncio
import time

from tofuflow_provider.triggers.tofuflow import TofuflowRunTrigger


def first_event(trigger):
    async def go():
        async for e in trigger.run():
            return e.payload

    return asyncio.run(go())


def test_it_serializes_to_its_arguments():
    t = TofuflowRunTrigger("c", "r1", ["applied"], 2.0, 123.0, after="17")
    path, kwargs = t.serialize()
    assert path == "tofuflow_provider.triggers.tofuflow.TofuflowRunTrigger"
    assert TofuflowRunTrigger(**kwargs).serialize() == (path, kwargs)


def test_success_when_the_run_reaches_a_wanted_state(coord):
    run = coord.add_run("applying")
    coord.script[run["id"]] = ["applying", "applying", "applied"]
    e = first_event(TofuflowRunTrigger("tofuflow_default", run["id"], ["applied"], 0))
    assert (e["run_id"], e["status"], e["state"]) == (run["id"], "success", "applied")


def test_failure_carries_tofuflows_reason(coord):
    run = coord.add_run("failed", error="tofu apply exited 1")
    e = first_event(TofuflowRunTrigger("tofuflow_default", run["id"], ["applied"], 0))
    assert e["status"] == "failed" and e["message"] == "tofu apply exited 1"


def test_timeout_at_the_deadline(coord):
    run = coord.add_run("applying")
    e = first_event(TofuflowRunTrigger("tofuflow_default", run["id"], ["applied"], 0, time.time()))
    assert e["status"] == "timeout"


def test_errors_become_an_error_event(coord):
    e = first_event(TofuflowRunTrigger("tofuflow_default", "missing", ["applied"], 0))
    assert e["status"] == "error" and "no such run" in e["message"]


def test_on_kill_cancels_the_run(coord):
    run = coord.add_run("applying")
    asyncio.run(TofuflowRunTrigger("tofuflow_default", run["id"], ["applied"]).on_kill())
    assert coord.runs[run["id"]]["state"] == "cancelled"


def test_an_apply_is_followed_through_the_log_stream_across_drops(coord, capsys):
    run = coord.add_run("applying")
    coord.logs[run["id"]] = ["plan line"]
    coord.script[run["id"]] = ["applying", "applying", "applied"]
    trig = TofuflowRunTrigger("tofuflow_default", run["id"], ["applied"], 0, after="0")
    e = first_event(trig)
    assert e["status"] == "success" and e["state"] == "applied"
    streams = coord.calls("GET", f"/api/v1/runs/{run['id']}/logs/stream")
    assert [r.headers.get("last-event-id") for r in streams] == ["0", "1"], "resumed"
    assert e["after"] == "2", "the cursor of the last line the trigger wrote"
    out = capsys.readouterr().out
    assert "[apply] applying line" in out and "[apply] applied line" in out
    assert "plan line" not in out


def test_a_plan_awaiting_approval_is_polled(coord):
    run = coord.add_run("planning")
    coord.script[run["id"]] = ["planning", "awaiting_approval"]
    e = first_event(TofuflowRunTrigger("tofuflow_default", run["id"], ["awaiting_approval"], 0))
    assert e["status"] == "success"
    assert not coord.calls("GET", f"/api/v1/runs/{run['id']}/logs/stream")
