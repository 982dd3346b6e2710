//! The dead-letter queue is bounded (`--dead-letter-max`, oldest dropped), counted in
//! `/metrics`, and admins can list it (without losing or reordering anything) and purge it.

use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use std::time::Duration;
use tofuflow_e2e::{bin_dir, metric, users_file, wait_for, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(60);
const ADMIN: &str = "admin-token-d34d";
const OPERATOR: &str = "operator-token-d34d";
const VIEWER: &str = "viewer-token-d34d";

fn cli(c: &Cluster, token: &str, args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(bin_dir().join("tofuflow"))
        .args(args)
        .env("TOFUFLOW_COORDINATOR", c.grpc_url())
        .env("TOFUFLOW_TOKEN", token)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// `dead-letter list -o json` as the admin.
fn list(c: &Cluster) -> serde_json::Value {
    let (code, out, err) = cli(c, ADMIN, &["dead-letter", "list", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect()
}

async fn start(max: &str) -> Cluster {
    let tmp = std::env::temp_dir();
    let users = users_file(
        &tmp,
        &[
            ("ada", "admin", ADMIN),
            ("olga", "operator", OPERATOR),
            ("vera", "viewer", VIEWER),
        ],
    );
    let mut c = Cluster::start_with(
        Db::Sqlite,
        &["default"],
        &[
            "--users-file",
            users.to_str().unwrap(),
            "--dead-letter-max",
            max,
        ],
    )
    .await;
    std::fs::remove_file(&users).unwrap();
    // The users file's admin makes the agents' join tokens.
    c.token = Some(ADMIN.into());
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dead_letter_queue_keeps_the_newest_n_and_admins_list_and_purge_it() {
    let mut c = start("5").await;
    c.agent(AgentOpts::default()).await;
    // Eight poison messages on the pool's queue: the agent dead-letters each on sight.
    let ch = c.amqp().await;
    for i in 0..8 {
        ch.basic_publish(
            "tofuflow.tasks".into(),
            "default".into(),
            BasicPublishOptions::default(),
            format!("poison {i} \u{ff}\u{0}").as_bytes(),
            BasicProperties::default().with_message_id(format!("poison-{i}").into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let want: Vec<String> = (3..8).map(|i| format!("poison-{i}")).collect();
    let cc = &c;
    let w = &want;
    wait_for("the newest five poison messages dead", T, || async move {
        Some(list(cc)).filter(|v| &ids(v) == w)
    })
    .await;
    assert_eq!(c.queue_depth("tofuflow.pool.default").await, 0);
    assert_eq!(c.queue_depth("tofuflow.dead").await, 5, "the limit holds");
    assert_eq!(metric(&c, "tofuflow_dead_letters"), Some(5.0));

    // Listing leaves every message in place, in order, however often it is done.
    for _ in 0..3 {
        let v = list(&c);
        assert_eq!(ids(&v), want);
        assert_eq!(v["total"], 5);
        assert_eq!(v["max_length"], 5);
    }
    let v = list(&c);
    let first = &v["messages"][0];
    assert_eq!(first["reason"], "rejected", "{first}");
    assert_eq!(first["queue"], "tofuflow.pool.default", "{first}");
    assert_eq!(first["pool"], "default", "{first}");
    assert!(first["died_unix_ms"].as_i64().unwrap() > 0, "{first}");
    assert_eq!(c.queue_depth("tofuflow.dead").await, 5);
    let (code, out, err) = cli(&c, ADMIN, &["dead-letter", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("5 dead messages") && out.contains("poison-7"),
        "{out}"
    );
    assert!(out.contains("rejected"), "{out}");

    // Only admins.
    for token in [VIEWER, OPERATOR] {
        for args in [&["dead-letter", "list"][..], &["dead-letter", "purge"][..]] {
            let (code, _, err) = cli(&c, token, args);
            assert!(
                code == 1 && err.contains("needs the admin role"),
                "{args:?}: {err}"
            );
        }
    }
    assert_eq!(c.queue_depth("tofuflow.dead").await, 5);

    let (code, out, err) = cli(
        &c,
        ADMIN,
        &["dead-letter", "purge", "--reason", "looked at them"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("purged 5 dead messages"), "{out}");
    assert_eq!(c.queue_depth("tofuflow.dead").await, 0);
    assert_eq!(metric(&c, "tofuflow_dead_letters"), Some(0.0));
    let log = std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("dead letters purged")
            && l.contains("actor=ada")
            && l.contains("purged=5")),
        "the purge is in the log with who did it"
    );
    let v = list(&c);
    assert_eq!(v["total"], 0);
    assert_eq!(ids(&v), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_queue_declared_with_another_limit_is_kept_and_the_log_says_what_to_do() {
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &["--dead-letter-max", "5"]).await;
    c.extra_coordinator_args = c
        .extra_coordinator_args
        .iter()
        .map(|a| if a == "5" { "7".to_string() } else { a.clone() })
        .collect();
    c.restart_coordinator().await;
    let log = std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap();
    let warning = log
        .lines()
        .find(|l| l.contains("the dead-letter queue tofuflow.dead exists with other arguments"))
        .unwrap_or_else(|| panic!("no warning about the queue's arguments:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("rabbitmqctl delete_queue"), "{warning}");
    assert!(warning.contains("rabbitmqctl set_policy"), "{warning}");
    // The coordinator works on: it is ready (the fixture waited for /readyz) and still counts.
    assert_eq!(metric(&c, "tofuflow_dead_letters"), Some(0.0));
}
