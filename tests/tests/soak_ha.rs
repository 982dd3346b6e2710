//! The fault suite on the distributed shape: two coordinators on one PostgreSQL behind a load
//! balancer, a three-node RabbitMQ cluster of the test's own, three agents given both
//! coordinators and every node. Runs are driven while faults land: agents SIGKILLed, either
//! coordinator SIGKILLed and started again, a RabbitMQ node stopped and started again. Then the
//! promises are checked from what was stored: every run ended in an explained state, no apply
//! ran twice, no two runs applied on one workspace at once, no fenced write was accepted, no
//! task or message was left behind. Prints the failover times (a coordinator killed → the CLI
//! given both answered; → the periodic work taken over) as p50/p99.
//!
//! CI drives 24 runs; `TOFUFLOW_SOAK=200` (or 1000) drives more.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tofuflow_e2e::{example, wait_for, AgentOpts, Cluster, Coordinator, Db, Proxy, RabbitCluster};
use tofuflow_proto::v1;

const TERMINAL: [&str; 7] = [
    "applied",
    "planned_no_changes",
    "failed",
    "cancelled",
    "rejected",
    "interrupted",
    "expired",
];

/// A tiny xorshift: the same faults in the same order on every run of the test.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn slow(both: &str) -> AgentOpts {
    AgentOpts {
        coordinator_url: Some(both.to_string()),
        env: BTreeMap::from([(
            "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
            "plan:0.4,apply:0.4".to_string(),
        )]),
        lock_timeout: Some("60s"),
        ..Default::default()
    }
}

/// The distributed shape under test.
struct Ha {
    c: Cluster,
    second: Coordinator,
    rmq: RabbitCluster,
    both: String,
    _lb: Proxy,
}

async fn start() -> Ha {
    let rmq = RabbitCluster::start(3);
    let lb_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lb_url = format!(
        "http://127.0.0.1:{}",
        lb_listener.local_addr().unwrap().port()
    );
    let mut c = Cluster::builder(Db::Postgres)
        .amqp_url(&rmq.amqp_urls("%2f"))
        .coordinator_args(&["--public-http-url", &lb_url])
        .start()
        .await;
    let second = c.another_coordinator(2).await;
    let lb = Proxy::start_on(
        lb_listener,
        vec![
            format!("127.0.0.1:{}", c.http_port),
            format!("127.0.0.1:{}", second.http_port),
        ],
    );
    let both = format!("{},{}", c.grpc_url(), second.grpc_url());
    c.cli_coordinators = Some(both.clone());
    for _ in 0..3 {
        c.agent(slow(&both)).await;
    }
    Ha {
        c,
        second,
        rmq,
        both,
        _lb: lb,
    }
}

/// How long until the CLI given both coordinators answers, the first having just died.
fn cli_failover(c: &Cluster, killed: Instant) -> Duration {
    let out = c.cli(&["run", "list", "--limit", "1"]);
    assert!(
        out.status.success(),
        "the CLI given both answers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    killed.elapsed()
}

/// How long until the periodic-work lease has a holder other than `dead` (if `dead` held it).
async fn periodic_takeover(c: &Cluster, before: &(String, i64), killed: Instant) -> Duration {
    wait_for(
        "the other coordinator to take the periodic work over",
        Duration::from_secs(60),
        || async { (leader(c).await.1 > before.1).then(|| killed.elapsed()) },
    )
    .await
}

/// The periodic-work lease's holder and epoch.
async fn leader(c: &Cluster) -> (String, i64) {
    use sqlx::{Connection, Row};
    let mut db = sqlx::PgConnection::connect(&c.db_url).await.unwrap();
    let row = sqlx::query("SELECT holder, epoch FROM leader_leases WHERE name = 'periodic-work'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    (row.get("holder"), row.get("epoch"))
}

/// Runs of one workspace whose applies overlapped in time (from the transitions).
async fn overlapping_applies(c: &Cluster) -> Vec<(String, String)> {
    use sqlx::{Connection, Row};
    let mut db = sqlx::PgConnection::connect(&c.db_url).await.unwrap();
    let rows = sqlx::query(
        "SELECT r.workspace, t.run_id, t.to_state, t.from_state, t.at_ms FROM transitions t JOIN runs r ON r.id = t.run_id \
         WHERE t.to_state = 'applying' OR t.from_state = 'applying' ORDER BY t.at_ms, t.id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut open: HashMap<String, String> = HashMap::new();
    let mut overlaps = Vec::new();
    for r in rows {
        let (ws, run, to): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if to == "applying" {
            if let Some(other) = open.get(&ws) {
                overlaps.push((other.clone(), run.clone()));
            }
            open.insert(ws, run);
        } else if open.get(&ws) == Some(&run) {
            open.remove(&ws);
        }
    }
    overlaps
}

fn p(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i].as_secs_f64()
}

/// One fault, chosen by the dice; its name.
async fn fault(ha: &mut Ha, dice: &mut Dice, times: &mut Times) -> &'static str {
    match dice.roll(8) {
        0..=2 => {
            let alive: Vec<usize> = (0..ha.c.agents.len())
                .filter(|&i| ha.c.agents[i].alive())
                .collect();
            let victim = alive[dice.roll(alive.len())];
            ha.c.agents[victim].kill();
            let both = ha.both.clone();
            ha.c.agent(slow(&both)).await;
            "agent SIGKILL"
        }
        3 | 4 => {
            let before = leader(&ha.c).await;
            let killed = Instant::now();
            ha.c.kill_coordinator();
            times.cli.push(cli_failover(&ha.c, killed));
            if leader_is_first(&ha.c, &before) {
                times
                    .periodic
                    .push(periodic_takeover(&ha.c, &before, killed).await);
            }
            ha.c.restart_coordinator().await;
            "coordinator 1 SIGKILL + restart"
        }
        5 => {
            ha.c.restart_another(&mut ha.second, 2).await;
            "coordinator 2 SIGKILL + restart"
        }
        6 => {
            let node = ha.rmq.nodes[1 + dice.roll(2)].name.clone();
            ha.rmq.stop_node(&node);
            ha.rmq.restart_node(&node);
            "RabbitMQ node stop + start"
        }
        _ => "none",
    }
}

/// Whether the lease's holder is coordinator 1: coordinator 2's log would name it otherwise
/// (each logs its holder name when it takes the lease).
fn leader_is_first(c: &Cluster, l: &(String, i64)) -> bool {
    let log = std::fs::read_to_string(c.dir.join("coordinator-2.log")).unwrap_or_default();
    !log.contains(&l.0)
}

#[derive(Default)]
struct Times {
    cli: Vec<Duration>,
    periodic: Vec<Duration>,
}

#[tokio::test(flavor = "multi_thread")]
async fn two_coordinators_and_a_rabbitmq_cluster_under_faults_lose_nothing_and_apply_once() {
    let runs: usize = std::env::var("TOFUFLOW_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut ha = start().await;
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut times = Times::default();
    let gpu = example("gpu-pool");
    let (mut ids, mut faults) = (Vec::new(), HashMap::<&str, usize>::new());
    let started = Instant::now();
    let (mut submitted, mut paced) = (0, 0);
    loop {
        let done = ended(&ha.c, &ids).await;
        if done == runs {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "runs stuck: {done}/{runs} ended\n{}",
            ha.c.logs_tail()
        );
        while submitted < runs && submitted - done < 6 {
            let ws = format!("ha/ws{}", dice.roll(8));
            let n = (1 + dice.roll(3)).to_string();
            ids.push(ha.c.submit(
                &gpu,
                &ws,
                &["--auto-approve", "--var", &format!("gpu_count={n}")],
            ));
            submitted += 1;
        }
        while paced + 4 <= done {
            paced += 4;
            let f = fault(&mut ha, &mut dice, &mut times).await;
            *faults.entry(f).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // the driver loop's poll interval
    }
    check_promises(&ha.c, &ids).await;
    let injected: usize = faults
        .iter()
        .filter(|(k, _)| **k != "none")
        .map(|(_, v)| v)
        .sum();
    assert!(injected >= runs / 10, "enough faults ({injected})");
    let (mut cli, mut periodic) = (times.cli, times.periodic);
    cli.sort();
    periodic.sort();
    eprintln!(
        "HA soak: {runs} runs, faults {faults:?}, in {:.0}s; lost 0, duplicate applies 0, concurrent applies 0; \
         failover: CLI answered p50 {:.2}s p99 {:.2}s (n={}), periodic work taken over p50 {:.2}s p99 {:.2}s (n={})",
        started.elapsed().as_secs_f64(),
        p(&cli, 0.5),
        p(&cli, 0.99),
        cli.len(),
        p(&periodic, 0.5),
        p(&periodic, 0.99),
        periodic.len()
    );
}

/// How many of `ids` have ended (asked through whichever coordinator answers).
async fn ended(c: &Cluster, ids: &[String]) -> usize {
    let mut done = 0;
    let Ok(mut client) = tokio::time::timeout(Duration::from_secs(5), c.client()).await else {
        return 0;
    };
    for id in ids {
        let r = client
            .get_run(v1::GetRunRequest {
                run_id: id.clone(),
                ..Default::default()
            })
            .await;
        if let Ok(r) = r {
            if TERMINAL.contains(&r.into_inner().state.as_str()) {
                done += 1;
            }
        }
    }
    done
}

/// The promises, checked from what was stored.
async fn check_promises(c: &Cluster, ids: &[String]) {
    let mut client = c.client().await;
    for id in ids {
        let r = client
            .get_run(v1::GetRunRequest {
                run_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if ["failed", "interrupted", "expired"].contains(&r.state.as_str()) {
            assert!(
                !r.error.is_empty(),
                "run {id} ended {} without a reason",
                r.state
            );
        }
        assert!(
            c.tofu_starts(id, "apply") <= 1,
            "run {id}: apply executed twice"
        );
    }
    let overlaps = overlapping_applies(c).await;
    assert!(
        overlaps.is_empty(),
        "applies overlapped on a workspace: {overlaps:?}"
    );
    c.assert_nothing_lost_or_doubled().await;
}
