//! One trace covers a run: the caller's TRACEPARENT goes CLI → coordinator → AMQP header → agent →
//! tofu's environment, where a provisioner sees the same trace id.

use std::time::Duration;
use tofuflow_e2e::{AgentOpts, Cluster, Db};

#[tokio::test(flavor = "multi_thread")]
async fn the_callers_trace_reaches_tofus_environment() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let dir = c.dir.join("trace-module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        "resource \"terraform_data\" \"t\" {\n  provisioner \"local-exec\" {\n    command = \"echo tp=$TRACEPARENT\"\n  }\n}\n",
    )
    .unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let out = std::process::Command::new(tofuflow_e2e::bin_dir().join("tofuflow"))
        .args([
            "run",
            "submit",
            dir.to_str().unwrap(),
            "-w",
            "trace/w",
            "--auto-approve",
        ])
        .env("TOFUFLOW_COORDINATOR", c.grpc_url())
        .env("TOFUFLOW_TOKEN", c.token.as_deref().unwrap())
        .env("TOFUFLOW_CONFIG_FILE", c.dir.join("cli-config.toml"))
        .env("TRACEPARENT", &caller)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let r = c
        .wait_state(&id, &["applied"], Duration::from_secs(60))
        .await;
    assert!(
        r.traceparent.contains(trace_id),
        "the run keeps the caller's trace: {}",
        r.traceparent
    );
    let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    let line = logs
        .lines()
        .find(|l| l.contains("(local-exec): tp="))
        .unwrap_or_else(|| panic!("no TRACEPARENT line in:\n{logs}"));
    let tp = line.split("tp=").nth(1).unwrap().trim();
    assert!(tofuflow_proto::valid_traceparent(tp), "{tp}");
    assert!(tp.contains(trace_id), "tofu runs in the same trace: {tp}");
    assert_ne!(tp, caller, "as a child span, not the caller's own span");
}
