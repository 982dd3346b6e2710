//! RabbitMQ restarts while runs are in flight: the coordinator's publisher and the agent's
//! consumer reconnect by themselves, the task queued meanwhile is published once the broker is
//! back, and nothing is lost or run twice.
//!
//! This stops the whole local broker, so it lives in its own test binary (cargo runs test
//! binaries one after another, never two at once).

use std::time::Duration;
use tofuflow_e2e::{broker_ctl, example, http_get, wait_for, AgentOpts, BrokerBack, Cluster, Db};

#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_mid_load_loses_no_task_and_runs_none_twice() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let gpu = example("gpu-pool");
    let before = c.submit(&gpu, "broker/before", &["--auto-approve"]);
    c.wait_state(&before, &["applied"], Duration::from_secs(60))
        .await;

    let _guard = BrokerBack;
    broker_ctl("stop_app");
    let ready = format!("{}/readyz", c.http_url());
    wait_for(
        "/readyz to report the broker gone",
        Duration::from_secs(30),
        || {
            let ready = ready.clone();
            async move {
                http_get(&ready)
                    .ok()
                    .filter(|(code, _)| *code == 503)
                    .map(|(_, b)| b)
            }
        },
    )
    .await;
    // Accepted while the broker is down: it waits in the outbox.
    let during = c.submit(&gpu, "broker/during", &["--auto-approve"]);
    assert_eq!(c.run(&during).await.state, "queued");
    let down_at = std::time::Instant::now();
    broker_ctl("start_app");
    let r = c
        .wait_state(&during, &["applied"], Duration::from_secs(120))
        .await;
    let recovered = down_at.elapsed();
    assert_eq!(r.plan_attempts, 1, "planned once");
    assert_eq!(c.tofu_starts(&during, "plan"), 1);
    assert_eq!(c.tofu_starts(&during, "apply"), 1, "applied once");
    let after = c.submit(&gpu, "broker/after", &["--auto-approve"]);
    c.wait_state(&after, &["applied"], Duration::from_secs(60))
        .await;
    let m = http_get(&format!("{}/metrics", c.http_url())).unwrap().1;
    assert!(
        m.contains("tofuflow_outbox_unsent 0") && m.contains("tofuflow_amqp_connected 1"),
        "{m}"
    );
    eprintln!(
        "broker restart: run submitted during the outage applied {:.1}s after the broker came back",
        recovered.as_secs_f64()
    );
}
