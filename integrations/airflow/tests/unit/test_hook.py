"""The hook against the in-memory coordinator: headers, idempotent submit, retries, errors,
bundles, outputs."""

from __future__ import annotations

import asyncio
import io
import tarfile

import pytest

from tofuflow_provider.hooks.tofuflow import (
    TofuflowError,
    TofuflowHook,
    idempotency_key,
    pack_module,
    public_outputs,
)


def test_submit_sends_the_token_and_the_idempotency_key_and_a_repeat_answers_the_same_run(coord):
    hook = TofuflowHook()
    a = hook.submit_run("ml/a", "sha256:abc", idempotency_key="k1", tags={"dag_id": "d"})
    b = hook.submit_run("ml/a", "sha256:abc", idempotency_key="k1", tags={"dag_id": "d"})
    assert a["id"] == b["id"] and len(coord.runs) == 1
    req = coord.calls("POST", "/api/v1/runs")[0]
    assert req.headers["idempotency-key"] == "k1"
    assert req.headers["authorization"] == "Bearer tfu_unit"
    assert req.headers["user-agent"].startswith("airflow-provider-tofuflow/")


def test_connection_errors_are_retried_with_backoff_then_given_up(coord):
    coord.fail_next_connects = 2
    assert TofuflowHook().me()["name"] == "airflow-bot"
    assert len(coord.requests) == 3
    coord.fail_next_connects = 10
    with pytest.raises(Exception, match="connection refused"):
        TofuflowHook(retries=2).me()


def test_a_refusal_carries_the_coordinators_reason(coord):
    with pytest.raises(TofuflowError) as e:
        TofuflowHook().get_run("nope")
    assert e.value.status == 404 and e.value.detail == "no such run"


def test_test_connection_says_who_the_token_is(coord):
    assert TofuflowHook().test_connection() == (True, "connected to tofuflow as airflow-bot")


def test_the_async_methods_use_the_same_api(coord):
    run = coord.add_run("applying")
    got = asyncio.run(TofuflowHook().aget_run(run["id"]))
    assert got["state"] == "applying"
    assert asyncio.run(TofuflowHook().acancel_run(run["id"], "x"))["state"] == "cancelled"


def test_logs_are_read_page_after_page_from_a_cursor(coord):
    run = coord.add_run("applying")
    coord.logs[run["id"]] = ["a", "b", "c"]
    hook = TofuflowHook()
    assert [line["line"] for line in hook.iter_logs(run["id"])] == ["a", "b", "c"]
    assert [line["line"] for line in hook.iter_logs(run["id"], "0")] == ["b", "c"]


def test_sensitive_outputs_are_left_out():
    run = {
        "outputs": {
            "endpoint": {"value": "10.0.0.1", "type": "string", "sensitive": False},
            "password": {"value": "(sensitive)", "type": "string", "sensitive": True},
        }
    }
    assert public_outputs(run) == {"endpoint": "10.0.0.1"}


def test_the_web_url_is_the_ui_run_page(coord):
    assert TofuflowHook().web_url("r1") == "http://coordinator.test:7701/ui/#/runs/r1"


def test_ui_fields_are_labelled_for_tofuflow():
    b = TofuflowHook.get_ui_field_behaviour()
    assert b["relabeling"] == {"host": "Coordinator URL", "password": "API token"}


def test_modules_pack_deterministically_without_local_state(tmp_path):
    (tmp_path / "main.tf").write_text('output "x" { value = 1 }\n')
    (tmp_path / "terraform.tfstate").write_text("{}")
    (tmp_path / ".terraform").mkdir()
    (tmp_path / ".terraform" / "junk").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.tf").write_text("")
    data = pack_module(tmp_path)
    assert data == pack_module(tmp_path)
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert names == ["main.tf", "sub", "sub/a.tf"]
    (tmp_path / "main.tf").unlink()
    with pytest.raises(ValueError, match="no .tf"):
        pack_module(tmp_path)


def test_idempotency_keys_are_stable_and_fit_the_header():
    k = idempotency_key("dag", "task", "manual__2026", 3)
    assert k == idempotency_key("dag", "task", "manual__2026", 3)
    assert k != idempotency_key("dag", "task", "manual__2026", 4)
    assert len(k) <= 255


def test_airflow_finds_the_connection_type_and_its_labelled_fields():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-tofuflow" in pm.providers, "pip install ./integrations/airflow"
    info = pm.providers["airflow-provider-tofuflow"].data["connection-types"][0]
    assert info["hook-class-name"].endswith("TofuflowHook")
    assert pm.field_behaviours["tofuflow"]["relabeling"]["password"] == "API token"
    assert "extra__tofuflow__ca_bundle" in pm.connection_form_widgets


def test_tls_extras_reach_the_client(monkeypatch):
    import json as _json

    monkeypatch.setenv(
        "AIRFLOW_CONN_TLS",
        _json.dumps(
            {
                "conn_type": "tofuflow",
                "host": "https://c.test:7701",
                "password": "t",
                "extra": {
                    "extra__tofuflow__ca_bundle": "/ca.pem",
                    "client_cert": "/c.pem",
                    "client_key": "/k.pem",
                    "timeout": "7",
                },
            }
        ),
    )
    s = TofuflowHook("tls").settings()
    assert s["verify"] == "/ca.pem" and s["cert"] == ("/c.pem", "/k.pem") and s["timeout"] == 7.0
