//! The audit log end to end, on SQLite and on PostgreSQL: a plan → approve → apply run is
//! recorded as submitted, approved, apply started and apply finished (with the state serials),
//! `run show` links the run to its state versions and audit entries, `tofuflow audit verify`
//! passes on the coordinator and on an export; then an entry altered, two swapped or one deleted
//! in the database makes it fail with exit code 3, naming the first bad entry. A flood of failed
//! authentications from one address is one entry a minute.

use serde_json::Value;
use std::time::Duration;
use tofuflow_e2e::{example, metric, users_file, wait_for, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(90);

/// Runs the CLI; (exit code, stdout, stderr).
fn cli(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    let out = c.cli(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `tofuflow audit verify`'s verdict: (exit code, first bad seq).
fn verify(c: &Cluster, extra: &[&str]) -> (i32, Option<i64>, String) {
    let mut args = vec!["audit", "verify", "-o", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = cli(c, &args);
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {out}{err}"));
    (code, v["bad_seq"].as_i64(), v["reason"].to_string())
}

/// Submits, approves and applies a run; returns its id.
async fn applied_run(c: &Cluster) -> String {
    let id = c.submit(&example("gpu-pool"), "audit/ws", &["--commit", "c0ffee"]);
    c.wait_state(&id, &["awaiting_approval"], T).await;
    let (code, _, err) = cli(c, &["run", "approve", &id, "--reason", "ticket-7"]);
    assert_eq!(code, 0, "{err}");
    c.wait_state(&id, &["applied"], T).await;
    id
}

/// The run's entries, checked: submitted → approved → apply started → apply finished.
fn check_run_entries(c: &Cluster, id: &str) {
    let (code, out, err) = cli(c, &["audit", "list", "--run", id, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let all: Vec<Value> = serde_json::from_str(&out).unwrap();
    let of_run: Vec<&Value> = all
        .iter()
        .filter(|e| {
            e["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("run_") || k.starts_with("apply_"))
        })
        .collect();
    let kinds: Vec<&str> = of_run.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "run_submitted",
            "run_approved",
            "apply_started",
            "apply_finished"
        ],
        "{out}"
    );
    assert_eq!(of_run[0]["actor"], "tester");
    assert_eq!(of_run[0]["detail"]["commit"], "c0ffee");
    assert!(of_run[0]["detail"]["bundle_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        (
            of_run[1]["actor"].as_str(),
            of_run[1]["detail"]["reason"].as_str()
        ),
        (Some("tester"), Some("approved: ticket-7"))
    );
    assert!(of_run[2]["detail"]["plan_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let fin = &of_run[3]["detail"];
    assert_eq!(fin["state"], "applied");
    assert!(fin["serial_before"].is_null(), "a fresh workspace: {fin}");
    assert!(fin["serial_after"].as_i64().unwrap() >= 1, "{fin}");
    assert!(
        all.iter().any(|e| e["kind"] == "state_locked"),
        "tofu's lock is recorded: {out}"
    );
}

/// Run show and state show link the run, its state versions and its entries both ways.
fn check_links(c: &Cluster, id: &str) {
    let (_, out, _) = cli(c, &["run", "show", id, "-o", "json"]);
    let run: Value = serde_json::from_str(&out).unwrap();
    let versions = run["state_versions"].as_array().unwrap();
    assert!(!versions.is_empty(), "{out}");
    assert!(run["audit_entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "apply_finished"));
    let (_, shown, _) = cli(c, &["run", "show", id]);
    assert!(
        shown.contains("State versions written") && shown.contains("apply_finished"),
        "{shown}"
    );
    let v = versions.last().unwrap()["version"].to_string();
    let (_, state, _) = cli(c, &["state", "show", "audit/ws", "--version", &v]);
    assert!(
        state.contains(&format!("tofuflow run show {id}")),
        "{state}"
    );
}

async fn audit_log_verifies_and_names_tampering(db: Db) {
    let mut c = Cluster::start(db).await;
    c.agent(AgentOpts::default()).await;
    let id = applied_run(&c).await;
    check_run_entries(&c, &id);
    check_links(&c, &id);

    assert_eq!(verify(&c, &[]).0, 0, "an untouched log verifies");
    let (code, export, err) = cli(&c, &["audit", "export"]);
    assert_eq!(code, 0, "{err}");
    assert!(export.lines().count() >= 6, "{export}");
    let file = c.dir.join("audit.jsonl");
    std::fs::write(&file, &export).unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(
        verify(&c, &["--file", f]).0,
        0,
        "the export verifies offline"
    );
    let forged = export.replacen("\"actor\":\"tester\"", "\"actor\":\"mallory\"", 1);
    std::fs::write(&file, forged).unwrap();
    assert_eq!(verify(&c, &["--file", f]).0, 3, "a forged export does not");

    let was = c.alter_audit_actor(3, "mallory").await;
    let (code, bad, reason) = verify(&c, &[]);
    assert_eq!((code, bad), (3, Some(3)), "altered: {reason}");
    assert!(reason.contains("altered"), "{reason}");
    c.alter_audit_actor(3, &was).await;
    assert_eq!(verify(&c, &[]).0, 0, "restored");

    c.swap_audit_entries(2, 4).await;
    let (code, bad, reason) = verify(&c, &[]);
    assert_eq!((code, bad), (3, Some(2)), "swapped: {reason}");
    assert!(reason.contains("reordered"), "{reason}");
    c.swap_audit_entries(2, 4).await;
    assert_eq!(verify(&c, &[]).0, 0, "swapped back");

    c.delete_audit_entry(5).await;
    let (code, bad, reason) = verify(&c, &[]);
    assert_eq!((code, bad), (3, Some(5)), "deleted: {reason}");
    assert!(reason.contains("missing"), "{reason}");
    let (code, _, err) = cli(&c, &["audit", "verify"]);
    assert!(code == 3 && err.contains("first bad entry 5"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_log_verifies_and_names_tampering_on_sqlite() {
    audit_log_verifies_and_names_tampering(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_log_verifies_and_names_tampering_on_postgres() {
    audit_log_verifies_and_names_tampering(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_authentications_from_one_address_are_one_entry_a_minute() {
    let users = users_file(
        &std::env::temp_dir(),
        &[("ada", "admin", "admin-token-3c9d1e")],
    );
    let c = Cluster::start_with(
        Db::Sqlite,
        &["default"],
        &["--users-file", users.to_str().unwrap()],
    )
    .await;
    std::fs::remove_file(&users).unwrap();
    // Each call is a new connection, from a new port.
    for _ in 0..5 {
        let (code, _, _) = cli(&c, &["--token", "forged-token-0b7e44", "run", "list"]);
        assert_eq!(code, 1);
    }
    assert_eq!(
        metric(&c, "tofuflow_auth_failures_total{api=\"user\"}"),
        Some(5.0)
    );
    let list = || {
        let (code, out, err) = cli(
            &c,
            &[
                "--token",
                "admin-token-3c9d1e",
                "audit",
                "list",
                "--kind",
                "auth_failed",
                "-o",
                "json",
            ],
        );
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Vec<Value>>(&out).unwrap()
    };
    let entries = wait_for("the auth_failed entry", T, || {
        let e = list();
        async move { (!e.is_empty()).then_some(e) }
    })
    .await;
    assert_eq!(entries.len(), 1, "one entry for the minute: {entries:?}");
    let d = &entries[0]["detail"];
    assert_eq!(
        (d["api"].as_str(), d["peer"].as_str(), d["count"].as_i64()),
        (Some("user"), Some("127.0.0.1"), Some(1)),
        "{d}"
    );
    assert_eq!(d["reason"], "invalid user token");
    assert_eq!(verify_as(&c, "admin-token-3c9d1e"), 0);
}

/// `tofuflow audit verify` with a user token: its exit code.
fn verify_as(c: &Cluster, token: &str) -> i32 {
    cli(c, &["--token", token, "audit", "verify"]).0
}
