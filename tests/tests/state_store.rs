//! The state store with real agents and the stand-in tofu: concurrent runs on one workspace never
//! both apply; a dead agent's apply leaves a clean state for the next run; rollback restores
//! content byte for byte; state is encrypted at rest and survives key rotation; human locks.

use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tofuflow_e2e::{example, wait_for, AgentOpts, Cluster, Db};
use tofuflow_proto::v1;

const T: Duration = Duration::from_secs(90);

fn pull(c: &Cluster, ws: &str, version: Option<i64>) -> Vec<u8> {
    let v = version.map(|v| v.to_string());
    let mut args = vec!["state", "pull", ws];
    if let Some(v) = &v {
        args.extend(["--version", v]);
    }
    let out = c.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_on_one_workspace_take_turns_and_never_apply_together() {
    let mut c = Cluster::start(Db::Sqlite).await;
    // Apply holds the lock a while, so the two runs would overlap if they could.
    let slow = BTreeMap::from([("TOFU_DOUBLE_SLEEP_AFTER".to_string(), "apply:2".to_string())]);
    c.agent(AgentOpts {
        env: slow.clone(),
        ..Default::default()
    })
    .await;
    c.agent(AgentOpts {
        env: slow,
        ..Default::default()
    })
    .await;
    let gpu = example("gpu-pool");
    let a = c.submit(
        &gpu,
        "shared/ws",
        &["--auto-approve", "--var", "gpu_count=2"],
    );
    let b = c.submit(
        &gpu,
        "shared/ws",
        &["--auto-approve", "--var", "gpu_count=3"],
    );
    assert_eq!(
        c.run(&b).await.state,
        "pending",
        "the second run waits for the first"
    );
    let ra = c.wait_state(&a, &["applied"], T).await;
    let rb = c.wait_state(&b, &["applied"], T).await;
    let a_done = ra.transitions.last().unwrap().unix_ms;
    let b_started = rb
        .transitions
        .iter()
        .find(|t| t.from_state == "pending")
        .expect("b waited")
        .unix_ms;
    assert!(b_started >= a_done, "b started only after a applied");
    assert!(
        rb.transitions[0]
            .reason
            .contains(&format!("waits for run {a}")),
        "{}",
        rb.transitions[0].reason
    );
    assert_eq!(
        rb.summary.unwrap().add,
        1,
        "b planned against a's state (2 nodes → 3)"
    );
    assert_eq!(
        (c.tofu_starts(&a, "apply"), c.tofu_starts(&b, "apply")),
        (1, 1)
    );
    let v: Value =
        serde_json::from_slice(&c.cli(&["state", "list", "shared/ws", "-o", "json"]).stdout)
            .unwrap();
    let serials: Vec<i64> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["serial"].as_i64().unwrap())
        .collect();
    assert_eq!(serials, [2, 1], "two applies, one after the other");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_queued_behind_a_rejected_plan_goes_ahead_and_the_rejected_plan_never_applies() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let gpu = example("gpu-pool");
    let first = c.submit(&gpu, "race/ws", &["--var", "gpu_count=2"]);
    c.wait_state(&first, &["awaiting_approval"], T).await;
    // Another run queues behind it; reject the first so the second goes ahead and applies.
    let second = c.submit(&gpu, "race/ws", &["--auto-approve", "--var", "gpu_count=3"]);
    assert!(c.cli(&["run", "reject", &first]).status.success());
    c.wait_state(&second, &["applied"], T).await;
    let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", &second]).stdout).to_string();
    assert!(logs.contains("Apply complete!"), "{logs}");
    assert_eq!(
        c.tofu_starts(&first, "apply"),
        0,
        "a rejected plan never applies"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_apply_releases_its_lock_and_the_next_run_applies_on_the_last_good_version() {
    let mut c = Cluster::start(Db::Sqlite).await;
    let normal = c.agent(AgentOpts::default()).await;
    let gpu = example("gpu-pool");
    let first = c.submit(&gpu, "killed/ws", &["--auto-approve"]);
    c.wait_state(&first, &["applied"], T).await;
    let good = pull(&c, "killed/ws", None);
    c.agents[normal].kill();
    let slow = BTreeMap::from([(
        "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
        "apply:60".to_string(),
    )]);
    let doomed = c
        .agent(AgentOpts {
            env: slow,
            ..Default::default()
        })
        .await;
    let second = c.submit(
        &gpu,
        "killed/ws",
        &["--auto-approve", "--var", "gpu_count=5"],
    );
    c.wait_state(&second, &["applying"], T).await;
    let (cc, sid) = (&c, second.clone());
    wait_for("the apply to hold the lock", T, || {
        let sid = sid.clone();
        async move {
            let v: Value = serde_json::from_slice(
                &cc.cli(&["state", "list", "killed/ws", "-o", "json"]).stdout,
            )
            .ok()?;
            (cc.tofu_starts(&sid, "apply") == 1 && !v["lock"].is_null()).then_some(())
        }
    })
    .await;
    c.agents[doomed].kill();
    c.wait_state(&second, &["interrupted"], T).await;
    let v: Value =
        serde_json::from_slice(&c.cli(&["state", "list", "killed/ws", "-o", "json"]).stdout)
            .unwrap();
    assert!(v["lock"].is_null(), "no lock is left behind: {}", v["lock"]);
    assert_eq!(
        pull(&c, "killed/ws", None),
        good,
        "the interrupted apply wrote nothing"
    );
    c.agent(AgentOpts::default()).await;
    let third = c.submit(
        &gpu,
        "killed/ws",
        &["--auto-approve", "--var", "gpu_count=1"],
    );
    let r = c.wait_state(&third, &["applied"], T).await;
    assert_eq!(
        r.summary.unwrap().destroy,
        1,
        "planned against the last good version (2 nodes → 1)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_restores_content_byte_for_byte() {
    for db in [Db::Sqlite, Db::Postgres] {
        let mut c = Cluster::start(db).await;
        c.agent(AgentOpts::default()).await;
        let gpu = example("gpu-pool");
        for n in ["2", "3"] {
            let id = c.submit(
                &gpu,
                "rb/ws",
                &["--auto-approve", "--var", &format!("gpu_count={n}")],
            );
            c.wait_state(&id, &["applied"], T).await;
        }
        let v1 = pull(&c, "rb/ws", Some(1));
        assert_ne!(v1, pull(&c, "rb/ws", None));
        let out = c.cli(&[
            "state",
            "rollback",
            "rb/ws",
            "--to",
            "1",
            "--reason",
            "bad upgrade",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            pull(&c, "rb/ws", None),
            v1,
            "{db:?}: the new latest version is version 1, byte for byte"
        );
        let v: Value =
            serde_json::from_slice(&c.cli(&["state", "list", "rb/ws", "-o", "json"]).stdout)
                .unwrap();
        let ev = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "rollback")
            .unwrap()
            .clone();
        assert_eq!(ev["actor"], "tester");
        assert!(ev["reason"].as_str().unwrap().contains("bad upgrade"));
        // The next run plans against the rolled-back state.
        let id = c.submit(&gpu, "rb/ws", &["--auto-approve", "--var", "gpu_count=2"]);
        assert_eq!(
            c.wait_state(&id, &["planned_no_changes", "applied"], T)
                .await
                .state,
            "planned_no_changes",
            "{db:?}"
        );
        // Refused while locked.
        assert!(c
            .cli(&["state", "lock", "rb/ws", "--reason", "maintenance"])
            .status
            .success());
        let out = c.cli(&["state", "rollback", "rb/ws", "--to", "2"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is locked by tester"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn state_is_encrypted_at_rest_and_survives_key_rotation() {
    let k1 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let k2 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &["--state-key", &k1]).await;
    c.agent(AgentOpts::default()).await;
    let id = c.submit(
        &example("gpu-pool"),
        "enc/ws",
        &["--auto-approve", "--var", "region=ap-south-7"],
    );
    c.wait_state(&id, &["applied"], T).await;
    let plain = pull(&c, "enc/ws", None);
    // Only a state file says `"provider": "provider[\"terraform.io/...` (logs, outputs and plans
    // hold other parts of the run in the clear, and are not what is encrypted here).
    let marker: &[u8] = br#"provider[\"terraform.io/builtin/terraform\"]"#;
    assert!(
        plain.windows(marker.len()).any(|w| w == marker),
        "readable through the API"
    );
    let db_file = c.dir.join("coordinator.db");
    let raw = || {
        let mut all = std::fs::read(&db_file).unwrap();
        all.extend(std::fs::read(c.dir.join("coordinator.db-wal")).unwrap_or_default());
        all
    };
    assert!(
        !raw().windows(marker.len()).any(|w| w == marker),
        "the state's content is not readable from the database file"
    );
    // Rotate: k2 becomes current, k1 readable; every version is re-encrypted at start.
    c.extra_coordinator_args = vec![
        "--state-key".into(),
        k2.clone(),
        "--old-state-keys".into(),
        k1,
    ];
    c.restart_coordinator().await;
    assert_eq!(
        pull(&c, "enc/ws", None),
        plain,
        "the same bytes after rotation"
    );
    // Only k2 now: still readable, so nothing is left under k1.
    c.extra_coordinator_args = vec!["--state-key".into(), k2];
    c.restart_coordinator().await;
    assert_eq!(pull(&c, "enc/ws", None), plain);
    let again = c.submit(
        &example("gpu-pool"),
        "enc/ws",
        &["--auto-approve", "--var", "region=ap-south-7"],
    );
    assert_eq!(
        c.wait_state(&again, &["planned_no_changes", "applied"], T)
            .await
            .state,
        "planned_no_changes",
        "agents read the rotated state"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_human_lock_stops_runs_and_only_its_owner_or_an_admin_releases_it() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    assert!(c
        .cli(&["state", "lock", "human/ws", "--reason", "migration"])
        .status
        .success());
    let id = c.submit(&example("gpu-pool"), "human/ws", &["--plan-only"]);
    let r = c.wait_state(&id, &["failed"], T).await;
    assert!(r.error.contains("tofu plan failed"), "{}", r.error);
    let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert!(
        logs.contains("Error acquiring the state lock")
            && logs.contains("tester")
            && logs.contains("migration"),
        "the holder is named:\n{logs}"
    );
    // mallory, an operator, is not the lock's owner.
    let mut admin_api = c.client().await;
    admin_api
        .grant_role(v1::RoleGrantRequest {
            user: "mallory".into(),
            role: "operator".into(),
            workspaces: "**".into(),
        })
        .await
        .unwrap();
    let mallory = admin_api
        .create_token(v1::CreateTokenRequest {
            user: "mallory".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let other = std::process::Command::new(tofuflow_e2e::bin_dir().join("tofuflow"))
        .args(["state", "unlock", "human/ws"])
        .env("TOFUFLOW_COORDINATOR", c.grpc_url())
        .env("TOFUFLOW_TOKEN", &mallory)
        .env("TOFUFLOW_CONFIG_FILE", c.dir.join("cli-config.toml"))
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stderr).contains("only its owner can unlock it"));
    let admin = std::process::Command::new(tofuflow_e2e::bin_dir().join("tofuflow"))
        .args([
            "state",
            "unlock",
            "human/ws",
            "--force",
            "--reason",
            "tester is on holiday",
        ])
        .env("TOFUFLOW_COORDINATOR", c.grpc_url())
        .env("TOFUFLOW_TOKEN", c.bootstrap_token.as_deref().unwrap())
        .env("TOFUFLOW_CONFIG_FILE", c.dir.join("cli-config.toml"))
        .output()
        .unwrap();
    assert!(
        admin.status.success(),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    let v: Value =
        serde_json::from_slice(&c.cli(&["state", "list", "human/ws", "-o", "json"]).stdout)
            .unwrap();
    let actions: Vec<(String, String)> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("lock".to_string(), "tester".to_string()),
            ("force-unlock".to_string(), "admin".to_string())
        ],
        "the audit trail records both"
    );
    let id = c.submit(&example("gpu-pool"), "human/ws", &["--plan-only"]);
    c.wait_state(&id, &["planned"], T).await;
}
