//! PostgreSQL stopped and started again mid-apply (a server of the test's own, so nothing else
//! on the machine notices): while it is down the coordinator keeps answering what it can
//! (`/healthz`; `/readyz` says why it is not ready; a user's request gets a clear error instead
//! of hanging), and once it is back the coordinator reconnects by itself, the apply that was
//! running finishes and is recorded, its log is whole (the lines tofu printed while the
//! database was down included), its state version is stored, and tofu applied once.

use std::time::{Duration, Instant};
use tofuflow_e2e::{http_get, wait_for, AgentOpts, Cluster, Db, PgServer};

const T: Duration = Duration::from_secs(120);

fn logs(c: &Cluster, id: &str) -> String {
    String::from_utf8_lossy(&c.cli(&["run", "logs", id]).stdout).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_restart_mid_apply_loses_nothing_and_the_coordinator_reconnects() {
    let pg = PgServer::start();
    // A lease outlives the outage (the default is 15 s): an outage longer than a lease stops
    // the task, as any silence that long does (the agent cannot tell it will be forgiven).
    let mut c = Cluster::builder(Db::Postgres)
        .pg_admin(&pg.admin_url())
        .coordinator_args(&["--lease-ttl", "40s"])
        .start()
        .await;
    c.agent(AgentOpts::default()).await;
    let gate = c.dir.join("trace/pg-gate");
    let dir = c.dir.join("pg-module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        format!(
            r#"
resource "terraform_data" "first" {{
  input = "one"
  provisioner "local-exec" {{
    command = "echo PG-BEFORE; while [ ! -f {gate} ]; do sleep 0.1; done; echo PG-AFTER"
  }}
}}
resource "terraform_data" "second" {{
  input = terraform_data.first.output
}}
"#,
            gate = gate.display()
        ),
    )
    .unwrap();
    let id = c.submit(&dir, "pg/restart", &["--auto-approve"]);
    c.wait_state(&id, &["applying"], T).await;
    wait_for("the apply's first marker", T, || async {
        logs(&c, &id).contains("PG-BEFORE").then_some(())
    })
    .await;

    pg.stop();
    let down = Instant::now();
    let health = http_get(&format!("{}/healthz", c.http_url())).expect("healthz answers");
    assert_eq!(health.0, 200, "{health:?}");
    let ready = http_get(&format!("{}/readyz", c.http_url())).expect("readyz answers");
    assert_eq!(ready.0, 503, "{ready:?}");
    assert!(ready.1.contains("database not reachable"), "{ready:?}");
    let asked = Instant::now();
    let out = c.cli(&["run", "show", &id]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "no answer without the database");
    assert!(
        err.contains("cannot answer now") && err.contains("database"),
        "a clear error: {err}"
    );
    eprintln!(
        "while PostgreSQL was down, `run show` answered in {:?}: {}",
        asked.elapsed(),
        err.trim()
    );
    std::fs::write(&gate, b"go").unwrap(); // tofu goes on while the database is down
    pg.start_again();
    eprintln!("PostgreSQL was down {:?}", down.elapsed());

    let r = c.wait_state(&id, &["applied"], T).await;
    assert_eq!(r.state, "applied", "{r:?}");
    let text = logs(&c, &id);
    assert!(
        text.contains("PG-BEFORE") && text.contains("PG-AFTER"),
        "the whole log:\n{text}"
    );
    assert_eq!(c.tofu_starts(&id, "apply"), 1, "tofu applied once");
    let state =
        String::from_utf8_lossy(&c.cli(&["state", "pull", "pg/restart"]).stdout).to_string();
    assert!(
        state.contains("\"first\"") && state.contains("\"second\""),
        "{state}"
    );
    wait_for("the coordinator to be ready again", T, || async {
        let (code, _) = http_get(&format!("{}/readyz", c.http_url())).ok()?;
        (code == 200).then_some(())
    })
    .await;
    c.kill_coordinator();
}
