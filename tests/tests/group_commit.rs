//! Submits, claims and agents' log batches that arrive together share one transaction (group
//! commit): every submit that was answered, and every log line whose batch was acknowledged, is
//! still there after the coordinator is SIGKILLed; one submit refused inside a group leaves
//! nothing behind while the others of its group are stored; two agents racing for each task in
//! shared groups get one lease per task; on SQLite and on PostgreSQL.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tofuflow_e2e::{
    claim_next, example, fake_agent, next_task_message, wait_for, Claimed, Cluster, Db,
};
use tofuflow_proto::v1;

/// A plan-only run of `bundle` in workspace `ws` (nothing runs it: no agent).
fn request(bundle: &str, ws: String) -> v1::SubmitRunRequest {
    v1::SubmitRunRequest {
        workspace: ws,
        bundle_digest: bundle.to_string(),
        pool: "default".into(),
        kind: v1::RunKind::PlanOnly as i32,
        variables: BTreeMap::from([("region".into(), "eu-west-1".into())])
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// 16 plan-only runs of `bundle`, in workspaces `PREFIX-0` … `PREFIX-15`.
async fn submit_plans(c: &Cluster, bundle: &str, prefix: &str) {
    let mut client = c.client().await;
    for k in 0..16 {
        client
            .submit_run(request(bundle, format!("{prefix}-{k}")))
            .await
            .expect("submit");
    }
}

/// The example module, uploaded; its bundle digest.
fn bundle(c: &Cluster) -> String {
    c.upload_bundle(&example("gpu-pool"), "gc/warm-up")
}

async fn answered_submits_survive_a_sigkill(db: Db) {
    let mut c = Cluster::start(db).await;
    let bundle = bundle(&c);
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for k in 0..16 {
        let mut client = c.client().await;
        let (bundle, answered) = (bundle.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                match client
                    .submit_run(request(&bundle, format!("gc/k{k}-{i}")))
                    .await
                {
                    Ok(r) => answered.lock().unwrap().push(r.into_inner().id),
                    Err(_) => return i,
                }
            }
            unreachable!()
        }));
    }
    let enough = answered.clone();
    wait_for("300 answered submits", Duration::from_secs(60), || {
        let n = enough.lock().unwrap().len();
        async move { (n >= 300).then_some(()) }
    })
    .await;
    assert_grouped(&c, &format!("{db:?} before the SIGKILL"));
    c.kill_coordinator();
    for t in clients {
        t.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    c.start_coordinator().await;
    let mut client = c.client().await;
    for id in &answered {
        let r = client
            .get_run(v1::GetRunRequest {
                run_id: id.clone(),
                ..Default::default()
            })
            .await;
        assert!(
            r.is_ok(),
            "{db:?}: answered run {id} is gone after the SIGKILL: {r:?}"
        );
    }
    let distinct: std::collections::BTreeSet<_> = answered.iter().collect();
    assert_eq!(distinct.len(), answered.len(), "{db:?}: one run per answer");
    assert_audit_chain_whole(&c, &format!("{db:?} after the SIGKILL"));
}

/// Some submits shared a transaction (`/metrics`: more submits than groups).
fn assert_grouped(c: &Cluster, when: &str) {
    assert_grouped_as(c, "submit", when)
}

/// Some jobs of `kind` (`submit`, `log`) shared a transaction: more of them than groups.
fn assert_grouped_as(c: &Cluster, kind: &str, when: &str) {
    let jobs = tofuflow_e2e::metric(c, &format!("tofuflow_{kind}_group_sum")).unwrap_or(0.0);
    let groups = tofuflow_e2e::metric(c, &format!("tofuflow_{kind}_group_count")).unwrap_or(0.0);
    assert!(
        jobs > groups,
        "{when}: no group held more than one {kind} ({jobs} in {groups} groups)"
    );
}

/// 16 tasks, each claimed by an agent of its own, report log batches of 20 lines as fast as
/// they are acknowledged until the coordinator is SIGKILLed: after its restart every line of
/// every acknowledged batch is in its run's log, in order.
async fn acknowledged_log_lines_survive_a_sigkill(db: Db) {
    let mut c = Cluster::start(db).await;
    let bundle = bundle(&c);
    submit_plans(&c, &bundle, "gc/logs").await;
    let mut claimed = Vec::new();
    for k in 0..16 {
        claimed.push(claim_next(&c, "default", &format!("gc-agent-{k}")).await);
    }
    let acked = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let mut writers = Vec::new();
    for task in claimed {
        writers.push(tokio::spawn(report_until_refused(task, acked.clone())));
    }
    let enough = acked.clone();
    wait_for("300 acknowledged batches", Duration::from_secs(60), || {
        let n: u64 = enough.lock().unwrap().values().sum();
        async move { (n >= 300).then_some(()) }
    })
    .await;
    assert_grouped_as(&c, "log", &format!("{db:?} before the SIGKILL"));
    c.kill_coordinator();
    for w in writers {
        w.await.unwrap();
    }
    c.start_coordinator().await;
    let acked = acked.lock().unwrap().clone();
    for (run, batches) in acked {
        let out = c.cli(&["run", "logs", &run]);
        let log = String::from_utf8_lossy(&out.stdout);
        let expected: Vec<String> = (0..batches * 20)
            .map(|n| format!("line {n} of {run}"))
            .collect();
        let got: Vec<&str> = log.lines().filter(|l| l.starts_with("line ")).collect();
        assert!(
            got.len() >= expected.len() && got[..expected.len()] == expected[..],
            "{db:?}: run {run} lost acknowledged lines: {} acknowledged, {} stored",
            expected.len(),
            got.len()
        );
    }
}

/// Reports batches of 20 lines for `task` until one is not acknowledged; counts the
/// acknowledged batches by run.
async fn report_until_refused(mut task: Claimed, acked: Arc<Mutex<BTreeMap<String, u64>>>) {
    let run = task.spec.run_id.clone();
    for b in 0u64.. {
        let events = (b * 20..b * 20 + 20)
            .map(|n| v1::Event {
                seq: n + 1,
                unix_ms: 1,
                stream: 1,
                line: format!("line {n} of {run}"),
            })
            .collect();
        let batch = v1::EventBatch {
            task_id: task.spec.task_id.clone(),
            attempt: task.spec.attempt,
            epoch: task.epoch,
            events,
            lease_token: task.lease_token.clone(),
        };
        if task
            .client
            .report_events(tokio_stream::iter(vec![batch]))
            .await
            .is_err()
        {
            return;
        }
        *acked.lock().unwrap().entry(run.clone()).or_default() += 1;
    }
}

/// `tofuflow audit verify` walks the whole hash chain.
fn assert_audit_chain_whole(c: &Cluster, when: &str) {
    let o = c.cli(&["audit", "verify"]);
    assert!(
        o.status.success(),
        "{when}: the audit chain is broken: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Half the submits carry a run environment, which this coordinator (no --state-key) refuses
/// inside the transaction, after the run's row is written: only the others are stored, and
/// their audit entries chain.
async fn a_refused_submit_leaves_nothing_and_its_group_is_stored(db: Db) {
    let c = Cluster::start(db).await;
    let bundle = bundle(&c);
    let mut tasks = Vec::new();
    for k in 0..32 {
        let mut client = c.client().await;
        let bundle = bundle.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = request(&bundle, format!("gc/mixed-{k}"));
            if k % 2 == 1 {
                req.env
                    .insert("API_TOKEN".into(), "a-token-of-this-run".into());
            }
            (k, client.submit_run(req).await)
        }));
    }
    let mut client = c.client().await;
    for t in tasks {
        let (k, r) = t.await.unwrap();
        if k % 2 == 1 {
            let e = r.expect_err("a run env without --state-key is refused");
            assert!(
                e.message().contains("--state-key"),
                "{db:?}: {}",
                e.message()
            );
        } else {
            let id = r
                .expect("the others of its group are stored")
                .into_inner()
                .id;
            client
                .get_run(v1::GetRunRequest {
                    run_id: id,
                    ..Default::default()
                })
                .await
                .expect("the stored run can be read");
        }
    }
    let o = c.cli(&["run", "list", "-o", "json", "--limit", "100"]);
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mixed: Vec<String> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["workspace"].as_str())
        .filter(|w| w.starts_with("gc/mixed-"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        mixed.len(),
        16,
        "{db:?}: only the accepted runs exist: {mixed:?}"
    );
    assert!(mixed
        .iter()
        .all(|w| w.trim_start_matches("gc/mixed-").parse::<u32>().unwrap() % 2 == 0));
    assert_grouped(&c, &format!("{db:?} mixed"));
    assert_audit_chain_whole(&c, &format!("{db:?} after mixed groups"));
}

/// 16 tasks queued; for each, two agents claim it at the same moment as every other pair: each
/// task is granted once (the other claim refused), and claims shared groups.
async fn racing_claims_in_groups_grant_one_lease_per_task(db: Db) {
    let c = Cluster::start(db).await;
    let bundle = bundle(&c);
    submit_plans(&c, &bundle, "gc/claims").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        tasks.push(next_task_message(&c, "default").await);
    }
    let together = Arc::new(tokio::sync::Barrier::new(32));
    let mut claims = Vec::new();
    for (k, (env, signed)) in tasks.into_iter().enumerate() {
        for side in 0..2 {
            let (mut a, id) = fake_agent(&c, &["default"], &format!("gc-claim-{k}-{side}"), None)
                .await
                .expect("register");
            let req = v1::ClaimRequest {
                agent_id: id,
                task_id: env.task_id.clone(),
                attempt: env.attempt,
                envelope_id: signed.envelope_id.clone(),
            };
            let together = together.clone();
            claims.push(tokio::spawn(async move {
                together.wait().await;
                let r = a.claim(req.clone()).await.expect("a claim is answered");
                (req.task_id, r.into_inner().granted)
            }));
        }
    }
    let mut granted = BTreeMap::<String, u32>::new();
    for cl in claims {
        let (task, won) = cl.await.unwrap();
        *granted.entry(task).or_default() += u32::from(won);
    }
    assert_eq!(granted.len(), 16);
    assert!(
        granted.values().all(|n| *n == 1),
        "{db:?}: one lease per task: {granted:?}"
    );
    assert_grouped_as(&c, "claim", &format!("{db:?} racing claims"));
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_claims_in_groups_grant_one_lease_per_task_on_sqlite() {
    racing_claims_in_groups_grant_one_lease_per_task(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_claims_in_groups_grant_one_lease_per_task_on_postgres() {
    racing_claims_in_groups_grant_one_lease_per_task(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answered_submits_survive_a_coordinator_sigkill_on_sqlite() {
    answered_submits_survive_a_sigkill(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answered_submits_survive_a_coordinator_sigkill_on_postgres() {
    answered_submits_survive_a_sigkill(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_log_lines_survive_a_coordinator_sigkill_on_sqlite() {
    acknowledged_log_lines_survive_a_sigkill(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_log_lines_survive_a_coordinator_sigkill_on_postgres() {
    acknowledged_log_lines_survive_a_sigkill(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_submit_leaves_nothing_and_its_group_is_stored_on_sqlite() {
    a_refused_submit_leaves_nothing_and_its_group_is_stored(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_submit_leaves_nothing_and_its_group_is_stored_on_postgres() {
    a_refused_submit_leaves_nothing_and_its_group_is_stored(Db::Postgres).await;
}
