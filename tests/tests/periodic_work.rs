//! Several coordinators on one database: the periodic work (the reaper) is done by exactly one
//! of them; when it dies, another takes the lease over (with the next epoch) within the lease's
//! lifetime. On SQLite, a second coordinator is told loudly that SQLite is for one.

use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tofuflow_e2e::{bin_dir, wait_for, Cluster, Db};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A second coordinator on the cluster's database and vhost, logging to `coordinator-2.log`.
fn second_coordinator(c: &Cluster) -> Child {
    let log = std::fs::File::create(c.dir.join("coordinator-2.log")).unwrap();
    Command::new(bin_dir().join("tofuflow-coordinator"))
        .args(["--grpc-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--database-url", &c.db_url, "--amqp-url", &c.amqp_url])
        .args(["--pools", &c.pools.join(",")])
        .args(["--lease-ttl", "3s", "--reap-interval", "200ms"])
        .env("TOFUFLOW_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn log_says(c: &Cluster, file: &str, what: &str) {
    let path = c.dir.join(file);
    let what = what.to_string();
    wait_for(
        &format!("{file} to say {what:?}"),
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let found = text.contains(&what);
            async move { found.then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_coordinator_does_the_periodic_work_and_another_takes_over() {
    let mut c = Cluster::start(Db::Postgres).await;
    log_says(
        &c,
        "coordinator.log",
        "this coordinator does the periodic work",
    )
    .await;
    let mut second = second_coordinator(&c);
    log_says(&c, "coordinator-2.log", "coordinator listening").await;
    // While the first renews, the second never leads (it has had many rounds to try).
    log_says(&c, "coordinator.log", "coordinator listening").await;
    let before = std::fs::read_to_string(c.dir.join("coordinator-2.log")).unwrap();
    assert!(!before.contains("does the periodic work"), "{before}");
    c.kill_coordinator();
    log_says(
        &c,
        "coordinator-2.log",
        "this coordinator does the periodic work",
    )
    .await;
    let after = std::fs::read_to_string(c.dir.join("coordinator-2.log")).unwrap();
    let line = after
        .lines()
        .find(|l| l.contains("does the periodic work"))
        .unwrap();
    assert!(
        line.contains("epoch=2") && line.contains("took_over_from=Some"),
        "{line}"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_coordinator_on_sqlite_is_told_loudly() {
    let c = Cluster::start(Db::Sqlite).await;
    log_says(
        &c,
        "coordinator.log",
        "this coordinator does the periodic work",
    )
    .await;
    let mut second = second_coordinator(&c);
    log_says(
        &c,
        "coordinator-2.log",
        "ANOTHER COORDINATOR USES THIS SQLITE DATABASE",
    )
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
}
