//! Two coordinators on one PostgreSQL; an agent and the CLI are given both. The first is
//! SIGKILLed while a run applies: the agent's heartbeats, reports and final result go to the
//! second, tofu's state backend is reached through the load balancer in front of both, the run
//! ends applied with tofu apply started once, and the CLI still answers.

use std::time::{Duration, Instant};
use tofuflow_e2e::{example, wait_for, AgentOpts, Cluster, Db, Proxy};

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn a_run_finishes_applied_when_its_coordinator_is_killed_mid_apply() {
    // The state backend's public URL is a load balancer in front of both coordinators (a TCP
    // proxy sending each connection to the first that accepts it), as it would be in a deployment.
    let lb_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lb_url = format!(
        "http://127.0.0.1:{}",
        lb_listener.local_addr().unwrap().port()
    );
    let mut c = Cluster::builder(Db::Postgres)
        .coordinator_args(&["--public-http-url", &lb_url])
        .start()
        .await;
    let second = c.another_coordinator(2).await;
    let _lb = Proxy::start_on(
        lb_listener,
        vec![
            format!("127.0.0.1:{}", c.http_port),
            format!("127.0.0.1:{}", second.http_port),
        ],
    );
    let both = format!("{},{}", c.grpc_url(), second.grpc_url());
    c.agent(AgentOpts {
        coordinator_url: Some(both.clone()),
        env: [(
            "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
            "apply:4".to_string(),
        )]
        .into(),
        ..Default::default()
    })
    .await;
    let id = c.submit(&example("gpu-pool"), "ha/failover", &["--auto-approve"]);
    let (cc, cid) = (&c, id.clone());
    wait_for("tofu apply to start", T, || {
        let n = cc.tofu_starts(&cid, "apply");
        async move { (n == 1).then_some(()) }
    })
    .await;

    let killed_at = Instant::now();
    c.kill_coordinator();
    let out = c.cli(&["--coordinator", &both, "run", "show", &id]);
    assert!(
        out.status.success(),
        "the CLI given both URLs answers with the first dead: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_answered = killed_at.elapsed();
    // From here the fixture's own clients talk to the survivor.
    c.grpc_port = second.grpc_port;
    c.http_port = second.http_port;
    let r = c.wait_state(&id, &["applied"], T).await;
    let finished = killed_at.elapsed();
    assert_eq!(c.tofu_starts(&id, "apply"), 1, "tofu apply ran once");
    assert_eq!(r.state, "applied");
    let agent_log = std::fs::read_to_string(c.dir.join("agent-0.log")).unwrap();
    assert!(
        agent_log.contains("moving to the next one"),
        "the agent says it moved to the second coordinator"
    );
    eprintln!(
        "coordinator failover: CLI answered {:.2}s after the kill, run applied {:.2}s after it",
        cli_answered.as_secs_f64(),
        finished.as_secs_f64()
    );
}

/// A client of one coordinator follows a run whose agent reports to the other: `run logs -f`
/// and `run wait` on the second see every line and the end, which they learn of only from the
/// shared database.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_followed_on_one_coordinator_is_reported_through_the_other() {
    let mut c = Cluster::builder(Db::Postgres).start().await;
    let second = c.another_coordinator(2).await;
    c.agent(AgentOpts {
        env: [(
            "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
            "apply:2".to_string(),
        )]
        .into(),
        ..Default::default()
    })
    .await;
    let id = c.submit(&example("gpu-pool"), "ha/follow", &["--auto-approve"]);
    let second_url = second.grpc_url();
    let on_second = |args: &[&str]| {
        let mut all = vec!["--coordinator", second_url.as_str()];
        all.extend_from_slice(args);
        c.cli(&all)
    };
    let follow = on_second(&["run", "logs", &id, "-f"]);
    let followed = String::from_utf8_lossy(&follow.stdout).to_string();
    assert!(
        follow.status.success(),
        "{}",
        String::from_utf8_lossy(&follow.stderr)
    );
    let whole = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert_eq!(
        followed, whole,
        "the follower on the other coordinator saw every line"
    );
    assert!(whole.contains("Apply complete"), "{whole}");
    let waited = on_second(&["run", "wait", &id]);
    assert!(waited.status.success());
    assert_eq!(c.run(&id).await.state, "applied");
}
