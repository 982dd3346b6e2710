//! One store suite, run against SQLite and against the machine's real PostgreSQL (a fresh
//! database per test, dropped afterwards).

use super::*;

fn policy() -> Policy {
    Policy {
        lease_ttl_ms: 60_000,
        max_plan_attempts: 3,
        queue_timeout_ms: 3_600_000,
        approval_timeout_ms: 3_600_000,
    }
}

fn new_run(ws: &str, auto: bool) -> NewRun {
    NewRun {
        limits: Default::default(),
        variable_decls: Default::default(),
        workspace: ws.into(),
        pool: "default".into(),
        kind: RunKind::PlanAndApply,
        bundle_digest: "sha256:b".into(),
        variables: BTreeMap::from([("gpus".into(), "4".into())]),
        var_files: vec![("x.tfvars".into(), b"a = 1".to_vec())],
        auto_approve: auto,
        actor: "alice".into(),
        commit: "abc".into(),
        pipeline_id: "p1".into(),
        traceparent: String::new(),
    }
}

/// A PostgreSQL database that exists for one test.
struct PgDb {
    admin: String,
    name: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                }
            })
        })
        .join();
    }
}

async fn stores() -> Vec<(&'static str, Store, Option<PgDb>, tempdir::Dir)> {
    use sqlx::Connection;
    let dir = tempdir::Dir::new();
    let sqlite = Store::connect(&format!("sqlite://{}/t.db", dir.path()))
        .await
        .unwrap();
    let admin = std::env::var("TOFUFLOW_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("tofuflow_store_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL must be running for the store suite (see README: Tests)");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut c)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let pg = Store::connect(&url).await.unwrap();
    let guard = PgDb { admin, name };
    // The agents the tests claim as, registered for the pool their runs use.
    for st in [&sqlite, &pg] {
        for a in ["a0", "a1", "a2", "a3"] {
            st.register_agent(
                a,
                a,
                &["default".into()],
                &BTreeMap::new(),
                1,
                &sha256_hex(a.as_bytes()),
            )
            .await
            .unwrap();
        }
    }
    vec![
        ("sqlite", sqlite, None, dir),
        ("postgres", pg, Some(guard), tempdir::Dir::new()),
    ]
}

mod tempdir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir()
                .join(format!("tofuflow-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> String {
            self.0.display().to_string()
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The lease a grant gives, as its agent presents it.
fn proof(g: &ClaimGrant) -> LeaseProof<'_> {
    LeaseProof {
        task_id: &g.task.id,
        attempt: g.task.attempt,
        epoch: g.epoch,
        agent_id: &g.task.agent_id,
        token: &g.lease_token,
    }
}

fn complete(
    t: &Task,
    epoch: i64,
    token: &str,
    outcome: v1::Outcome,
    changes: bool,
) -> v1::CompleteRequest {
    v1::CompleteRequest {
        agent_id: t.agent_id.clone(),
        lease_token: token.into(),
        task_id: t.id.clone(),
        attempt: t.attempt,
        epoch: epoch as u64,
        outcome: outcome as i32,
        has_changes: changes,
        summary: Some(v1::ChangeSummary {
            add: 2,
            change: 0,
            destroy: 0,
        }),
        outputs_json: "{\"a\":{\"value\":1}}".into(),
        error: String::new(),
        exit_code: 0,
        limit_hit: String::new(),
    }
}

#[tokio::test]
async fn a_runs_limits_and_the_limit_that_ended_it_are_kept_on_both_backends() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        let mut n = new_run("ml/limits", true);
        n.limits = Limits {
            memory_bytes: 1 << 28,
            timeout_secs: 120,
            ..Default::default()
        };
        let run = st.submit(n, &p).await.unwrap();
        assert_eq!(run.limits.memory_bytes, 1 << 28, "{name}");
        assert_eq!(run.limits.timeout_secs, 120, "{name}");
        let out = st.unsent(10).await.unwrap();
        let env = v1::TaskEnvelope::decode(out[0].payload.as_slice()).unwrap();
        let g = st.claim("a1", &env.task_id, 1, &p).await.unwrap().unwrap();
        assert_eq!(
            g.run.limits.memory_bytes,
            1 << 28,
            "{name}: the claim carries them"
        );
        let mut req = complete(&g.task, g.epoch, &g.lease_token, v1::Outcome::Failed, false);
        req.error = "killed for memory: ...".into();
        req.limit_hit = "memory".into();
        st.complete(&req, &p).await.unwrap();
        let r = st.get_run(&run.id).await.unwrap();
        assert_eq!(r.state, RunState::Failed, "{name}");
        assert_eq!(r.limit_hit, "memory", "{name}");
    }
}

#[tokio::test]
async fn a_run_goes_plan_approve_apply_on_both_backends() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        let run = st.submit(new_run("ml/a100", false), &p).await.unwrap();
        assert_eq!(run.state, RunState::Queued, "{name}");
        let out = st.unsent(10).await.unwrap();
        assert_eq!(out.len(), 1, "{name}: one outbox row for the plan");
        let env = v1::TaskEnvelope::decode(out[0].payload.as_slice()).unwrap();
        assert_eq!((env.attempt, env.workspace.as_str()), (1, "ml/a100"));
        st.mark_sent(out[0].id).await.unwrap();

        let g = st.claim("a1", &env.task_id, 1, &p).await.unwrap().unwrap();
        assert_eq!(g.run.state, RunState::Planning);
        let dup = st.claim("a2", &env.task_id, 1, &p).await.unwrap();
        assert!(
            dup.is_err(),
            "{name}: a duplicate delivery must not be claimed twice"
        );
        let (cancel, lost) = st
            .heartbeat(
                "a1",
                &[(env.task_id.clone(), 1, g.epoch, g.lease_token.clone())],
                false,
                &p,
            )
            .await
            .unwrap();
        assert!(cancel.is_empty() && lost.is_empty());
        st.set_artifact(proof(&g), v1::ArtifactKind::PlanFile, "sha256:plan")
            .await
            .unwrap();
        let c = complete(
            &g.task,
            g.epoch,
            &g.lease_token,
            v1::Outcome::Succeeded,
            true,
        );
        st.complete(&c, &p).await.unwrap();
        st.complete(&c, &p)
            .await
            .expect("a retried completion is absorbed");
        let r = st.get_run(&run.id).await.unwrap();
        assert_eq!(r.state, RunState::AwaitingApproval, "{name}");
        assert_eq!((r.add, r.has_changes), (2, true));

        assert!(st.reject("nope", "bob", "").await.is_err());
        let r = st.approve(&run.id, "bob", "lgtm", &p).await.unwrap();
        assert_eq!(r.state, RunState::Approved);
        assert!(
            st.approve(&run.id, "bob", "", &p).await.is_err(),
            "{name}: approving twice is refused"
        );
        let out = st.unsent(10).await.unwrap();
        assert_eq!(out.len(), 1);
        let env2 = v1::TaskEnvelope::decode(out[0].payload.as_slice()).unwrap();
        assert_eq!(env2.phase, v1::Phase::Apply as i32);
        let g2 = st.claim("a2", &env2.task_id, 1, &p).await.unwrap().unwrap();
        assert!(g2.epoch > g.epoch, "{name}: epochs only grow");
        st.complete(
            &complete(
                &g2.task,
                g2.epoch,
                &g2.lease_token,
                v1::Outcome::Succeeded,
                true,
            ),
            &p,
        )
        .await
        .unwrap();
        let r = st.get_run(&run.id).await.unwrap();
        assert_eq!(r.state, RunState::Applied);
        assert!(r.outputs.contains("value"));
        let tr: Vec<String> = st
            .transitions(&run.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.to)
            .collect();
        assert_eq!(
            tr,
            [
                "queued",
                "planning",
                "planned",
                "awaiting_approval",
                "approved",
                "applying",
                "applied"
            ],
            "{name}"
        );
        let who: Vec<String> = st
            .transitions(&run.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.actor)
            .collect();
        assert_eq!(who[4], "bob", "{name}: approval records the approver");
    }
}

#[tokio::test]
async fn expired_plan_lease_redispatches_and_fences_the_old_attempt() {
    for (name, st, _g, _d) in stores().await {
        let mut p = policy();
        let run = st.submit(new_run("w", false), &p).await.unwrap();
        let env =
            v1::TaskEnvelope::decode(st.unsent(1).await.unwrap()[0].payload.as_slice()).unwrap();
        p.lease_ttl_ms = -1; // the lease is born expired
        let g = st.claim("a1", &env.task_id, 1, &p).await.unwrap().unwrap();
        let did = st.reap(&p).await.unwrap();
        assert_eq!(did.len(), 1, "{name}: {did:?}");
        let r = st.get_run(&run.id).await.unwrap();
        assert_eq!(r.state, RunState::Queued);
        let rows = st.unsent(10).await.unwrap();
        assert_eq!(rows.len(), 2, "{name}: attempt 2 is queued for publishing");
        assert_eq!(rows[1].attempt, 2);
        let late = [v1::Event {
            seq: 1,
            unix_ms: 1,
            stream: 1,
            line: "late".into(),
        }];
        assert!(
            matches!(
                st.add_events(proof(&g), &late).await,
                Err(Error::Conflict(_))
            ),
            "{name}"
        );
        assert!(matches!(
            st.complete(
                &complete(
                    &g.task,
                    g.epoch,
                    &g.lease_token,
                    v1::Outcome::Succeeded,
                    false
                ),
                &p
            )
            .await,
            Err(Error::Conflict(_))
        ));
        assert!(
            st.claim("a1", &env.task_id, 1, &p).await.unwrap().is_err(),
            "attempt 1 is stale"
        );
        p.lease_ttl_ms = 60_000;
        let g2 = st.claim("a2", &env.task_id, 2, &p).await.unwrap().unwrap();
        st.add_events(proof(&g2), &late).await.unwrap();
        assert_eq!(
            st.add_events(proof(&g2), &late).await.unwrap(),
            0,
            "retried lines are absorbed"
        );
        st.complete(
            &complete(
                &g2.task,
                g2.epoch,
                &g2.lease_token,
                v1::Outcome::Succeeded,
                false,
            ),
            &p,
        )
        .await
        .unwrap();
        assert_eq!(
            st.get_run(&run.id).await.unwrap().state,
            RunState::PlannedNoChanges
        );
        assert_eq!(st.attempts_of(&run.id, Phase::Plan).await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn expired_apply_lease_interrupts_and_releases_the_lock() {
    for (name, st, _g, _d) in stores().await {
        let mut p = policy();
        let run = st.submit(new_run("w2", true), &p).await.unwrap();
        let env =
            v1::TaskEnvelope::decode(st.unsent(1).await.unwrap()[0].payload.as_slice()).unwrap();
        st.mark_sent(st.unsent(1).await.unwrap()[0].id)
            .await
            .unwrap();
        let g = st.claim("a1", &env.task_id, 1, &p).await.unwrap().unwrap();
        st.set_artifact(proof(&g), v1::ArtifactKind::PlanFile, "sha256:plan")
            .await
            .unwrap();
        st.complete(
            &complete(
                &g.task,
                g.epoch,
                &g.lease_token,
                v1::Outcome::Succeeded,
                true,
            ),
            &p,
        )
        .await
        .unwrap();
        assert_eq!(
            st.get_run(&run.id).await.unwrap().state,
            RunState::Approved,
            "{name}: auto-approved"
        );
        let row2 = st.unsent(1).await.unwrap().remove(0);
        let env2 = v1::TaskEnvelope::decode(row2.payload.as_slice()).unwrap();
        st.mark_sent(row2.id).await.unwrap();
        p.lease_ttl_ms = -1;
        let g2 = st.claim("a1", &env2.task_id, 1, &p).await.unwrap().unwrap();
        assert!(st
            .lock_state("w2", "L1", "{}", &g2.task)
            .await
            .unwrap()
            .is_ok());
        st.reap(&p).await.unwrap();
        let r = st.get_run(&run.id).await.unwrap();
        assert_eq!(r.state, RunState::Interrupted, "{name}");
        assert!(r.error.contains("not retried"), "{}", r.error);
        assert!(
            st.state_lock("w2").await.unwrap().is_none(),
            "{name}: the dead lease's lock is released"
        );
        assert!(
            st.unsent(5).await.unwrap().is_empty(),
            "{name}: nothing is re-dispatched for an apply"
        );
        let st_json = br#"{"version":4,"serial":1,"lineage":"L"}"#;
        assert!(
            matches!(
                st.write_state("w2", st_json, 1, "L", Some("L1"), &g2.task, "a1")
                    .await,
                Err(Error::Conflict(_))
            ),
            "fenced write"
        );
    }
}

#[tokio::test]
async fn state_writes_are_checked() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        st.submit(new_run("w3", false), &p).await.unwrap();
        let env =
            v1::TaskEnvelope::decode(st.unsent(1).await.unwrap()[0].payload.as_slice()).unwrap();
        let g = st.claim("a1", &env.task_id, 1, &p).await.unwrap().unwrap();
        let t = &g.task;
        assert_eq!(
            st.write_state("w3", b"one", 1, "L", None, t, "a")
                .await
                .unwrap(),
            1,
            "{name}"
        );
        assert_eq!(
            st.write_state("w3", b"one", 1, "L", None, t, "a")
                .await
                .unwrap(),
            1,
            "identical retry: no new version"
        );
        assert!(
            st.write_state("w3", b"two", 1, "L", None, t, "a")
                .await
                .is_err(),
            "same serial, other content"
        );
        assert!(
            st.write_state("w3", b"two", 2, "M", None, t, "a")
                .await
                .is_err(),
            "foreign lineage"
        );
        assert!(
            st.write_state("w3", b"two", 0, "L", None, t, "a")
                .await
                .is_err(),
            "lower serial"
        );
        assert!(st.lock_state("w3", "K", "{}", t).await.unwrap().is_ok());
        assert!(
            st.write_state("w3", b"two", 2, "L", None, t, "a")
                .await
                .is_err(),
            "locked: needs the lock ID"
        );
        assert!(
            st.write_state("w3", b"two", 2, "L", Some("X"), t, "a")
                .await
                .is_err(),
            "locked: wrong lock ID"
        );
        assert_eq!(
            st.write_state("w3", b"two", 2, "L", Some("K"), t, "a")
                .await
                .unwrap(),
            2
        );
        assert_eq!(st.latest_state("w3").await.unwrap().unwrap(), b"two");
        assert!(!st.unlock_state("w3", "X", &t.id).await.unwrap());
        assert!(st.unlock_state("w3", "K", &t.id).await.unwrap());
        assert_eq!(st.state_version_count("w3").await.unwrap(), 2);
    }
}

#[tokio::test]
async fn unroutable_task_fails_its_run_and_cancel_works_before_claim() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        let run = st.submit(new_run("w4", false), &p).await.unwrap();
        let row = st.unsent(1).await.unwrap().remove(0);
        st.unroutable(&row).await.unwrap();
        let r = st.get_run(&run.id).await.unwrap();
        assert_eq!(r.state, RunState::Failed, "{name}");
        assert!(
            r.error.contains("no queue is bound for pool"),
            "{}",
            r.error
        );

        let run = st.submit(new_run("w5", false), &p).await.unwrap();
        let r = st
            .cancel(&run.id, "carol", "changed my mind")
            .await
            .unwrap();
        assert_eq!(r.state, RunState::Cancelled);
        let env =
            v1::TaskEnvelope::decode(st.unsent(1).await.unwrap()[0].payload.as_slice()).unwrap();
        assert!(
            st.claim("a1", &env.task_id, 1, &p).await.unwrap().is_err(),
            "{name}: a cancelled run's task is never claimed"
        );
        assert!(
            st.cancel(&run.id, "carol", "").await.is_err(),
            "cancelling twice is refused"
        );
        let (d1, existed) = st.put_blob(b"bundle").await.unwrap();
        let (d2, existed2) = st.put_blob(b"bundle").await.unwrap();
        assert_eq!(
            (d1 == d2, existed, existed2),
            (true, false, true),
            "{name}: content-addressed, stored once"
        );
    }
}

/// A small deterministic generator (the test needs no extra crate and replays from its seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The invariants of the run/lease machine, checked against the stored rows.
async fn check_invariants(st: &Store, step: usize, seed: u64) {
    let ctx = |m: &str| format!("seed {seed} step {step}: {m}");
    let q = |sql: &'static str| sqlx::query(sql);
    // 1. At most one live attempt per task, and it is the task's current attempt.
    for r in q("SELECT t.id, t.attempt, t.state, (SELECT COUNT(*) FROM task_attempts a WHERE a.task_id = t.id AND a.outcome = '') AS live FROM tasks t").fetch_all(&st.pool).await.unwrap() {
        let live = i(&r, "live").unwrap();
        let state = s(&r, "state").unwrap();
        assert!(live <= 1, "{}", ctx("two live attempts of one task"));
        assert_eq!(live == 1, state == "running", "{}", ctx(&format!("task state {state} with {live} live attempts")));
    }
    // 2. An apply never runs twice: at most one claimed apply attempt per run.
    for r in
        q("SELECT run_id, COUNT(*) AS n FROM task_attempts WHERE phase = 'apply' GROUP BY run_id")
            .fetch_all(&st.pool)
            .await
            .unwrap()
    {
        assert!(
            i(&r, "n").unwrap() <= 1,
            "{}",
            ctx("an apply was claimed twice")
        );
    }
    // 3. Run state agrees with its tasks.
    for r in q("SELECT r.id, r.state, r.kind, (SELECT COUNT(*) FROM tasks t WHERE t.run_id = r.id AND t.state IN ('queued', 'running')) AS open, (SELECT COUNT(*) FROM tasks t WHERE t.run_id = r.id AND t.phase = 'plan' AND t.state = 'running') AS plan_running, (SELECT COUNT(*) FROM tasks t WHERE t.run_id = r.id AND t.phase = 'apply' AND t.state = 'running') AS apply_running, (SELECT COUNT(*) FROM tasks t WHERE t.run_id = r.id AND t.phase = 'apply' AND t.state = 'queued') AS apply_queued, (SELECT COUNT(*) FROM task_attempts a WHERE a.run_id = r.id AND a.phase = 'apply' AND a.outcome = 'succeeded') AS applied FROM runs r").fetch_all(&st.pool).await.unwrap() {
        let state: RunState = s(&r, "state").unwrap().parse().unwrap();
        let kind: RunKind = s(&r, "kind").unwrap().parse().unwrap();
        let open = i(&r, "open").unwrap();
        if crate::runs::is_terminal(state, kind) {
            assert_eq!(open, 0, "{}", ctx(&format!("a {state} run still has open tasks")));
        }
        match state {
            RunState::Planning => assert_eq!(i(&r, "plan_running").unwrap(), 1, "{}", ctx("planning without a running plan")),
            RunState::Applying => assert_eq!(i(&r, "apply_running").unwrap(), 1, "{}", ctx("applying without a running apply")),
            RunState::Approved => assert_eq!(i(&r, "apply_queued").unwrap(), 1, "{}", ctx("approved without a queued apply")),
            RunState::Applied => assert_eq!(i(&r, "applied").unwrap(), 1, "{}", ctx("applied without exactly one successful apply")),
            _ => {}
        }
    }
    // 4. Every recorded transition is a legal one.
    for r in q("SELECT from_state, to_state FROM transitions")
        .fetch_all(&st.pool)
        .await
        .unwrap()
    {
        let (from, to) = (s(&r, "from_state").unwrap(), s(&r, "to_state").unwrap());
        if from.is_empty() || from == to {
            continue; // creation, or a note (cancel requested)
        }
        assert!(
            crate::runs::allowed(from.parse().unwrap(), to.parse().unwrap()),
            "{}",
            ctx(&format!("illegal transition {from} -> {to}"))
        );
    }
    // 5. Runs that may apply take turns: at most one holds a workspace; pending runs have no task.
    let holds = crate::runs::HOLDS_WORKSPACE
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT workspace, COUNT(*) AS n FROM runs WHERE kind <> 'plan_only' AND state IN ({holds}) GROUP BY workspace HAVING COUNT(*) > 1");
    let crowded = sqlx::query(&sql).fetch_all(&st.pool).await.unwrap();
    assert!(crowded.is_empty(), "{}", ctx("two runs hold one workspace"));
    let n = i(&q("SELECT COUNT(*) AS n FROM tasks t JOIN runs r ON r.id = t.run_id WHERE r.state = 'pending'").fetch_one(&st.pool).await.unwrap(), "n").unwrap();
    assert_eq!(n, 0, "{}", ctx("a pending run has a task"));
    // 6. Fencing tokens are unique.
    let dup =
        q("SELECT epoch, COUNT(*) AS n FROM task_attempts GROUP BY epoch HAVING COUNT(*) > 1")
            .fetch_all(&st.pool)
            .await
            .unwrap();
    assert!(dup.is_empty(), "{}", ctx("two claims got the same epoch"));
}

#[tokio::test]
async fn random_sequences_of_deliver_claim_heartbeat_expire_report_restart_keep_the_invariants() {
    let (mut applied, mut interrupted, mut redispatched, mut waited) = (0i64, 0i64, 0i64, 0i64);
    for round in 0..6u64 {
        for (name, mut st, _g, d) in stores().await {
            let seed = 0x5eed_0000_0000_0001 ^ (name.len() as u64) ^ (round << 20);
            let mut rng = Rng(seed);
            let mut runs_: Vec<String> = Vec::new();
            let mut delivered: Vec<(String, u32)> = Vec::new();
            // Leases agents believe they hold (some are stale by design).
            let mut leases: Vec<(String, u32, i64, String, String)> = Vec::new();
            let (mut granted, mut refused, mut fenced) = (0, 0, 0);
            for step in 0..300 {
                // Some leases are born expired, some runs time out (queue or approval).
                let p = Policy {
                    lease_ttl_ms: if rng.below(4) == 0 { -1 } else { 60_000 },
                    queue_timeout_ms: if rng.below(6) == 0 { -1 } else { 3_600_000 },
                    approval_timeout_ms: if rng.below(4) == 0 { -1 } else { 3_600_000 },
                    ..policy()
                };
                match rng.below(10) {
                    0 | 1 => {
                        let mut n = new_run(&format!("ws{}", rng.below(5)), rng.below(2) == 0);
                        n.kind = [RunKind::PlanAndApply, RunKind::PlanOnly, RunKind::Destroy]
                            [rng.below(3)];
                        runs_.push(st.submit(n, &p).await.unwrap().id);
                    }
                    2 => {
                        // The publisher: messages go out, sometimes twice (a lost confirm).
                        for row in st.unsent(10).await.unwrap() {
                            if rng.below(3) != 0 {
                                st.mark_sent(row.id).await.unwrap();
                            }
                            delivered.push((row.task_id.clone(), row.attempt));
                        }
                    }
                    3 | 4 if !delivered.is_empty() => {
                        // The agent acks at claim, granted or not: the message is gone (duplicates
                        // may still be queued behind it).
                        let (t, a) = delivered.remove(rng.below(delivered.len()));
                        let agent = format!("a{}", rng.below(3));
                        match st.claim(&agent, &t, a, &p).await.unwrap() {
                            Ok(g) => {
                                granted += 1;
                                leases.push((t, a, g.epoch, agent, g.lease_token));
                            }
                            Err(_) => refused += 1,
                        }
                    }
                    5 if !leases.is_empty() => {
                        let (t, a, e, agent, tok) = leases[rng.below(leases.len())].clone();
                        let _ = st
                            .heartbeat(&agent, &[(t, a, e, tok)], false, &p)
                            .await
                            .unwrap();
                    }
                    6 => {
                        st.reap(&p).await.unwrap();
                    }
                    7 if !leases.is_empty() => {
                        let (t, a, e, agent, tok) = leases.remove(rng.below(leases.len()));
                        let lease = LeaseProof {
                            task_id: &t,
                            attempt: a,
                            epoch: e,
                            agent_id: &agent,
                            token: &tok,
                        };
                        let outcome = [
                            v1::Outcome::Succeeded,
                            v1::Outcome::Succeeded,
                            v1::Outcome::Failed,
                            v1::Outcome::Cancelled,
                        ][rng.below(4)];
                        let mut req = complete(
                            &Task {
                                id: t.clone(),
                                run_id: String::new(),
                                phase: Phase::Plan,
                                attempt: a,
                                state: crate::runs::TaskState::Running,
                                pool: String::new(),
                                agent_id: agent.clone(),
                                epoch: e,
                                lease_expires_ms: 0,
                                cancel_requested: false,
                                lease_sha256: String::new(),
                            },
                            e,
                            &tok,
                            outcome,
                            rng.below(2) == 0,
                        );
                        req.attempt = a;
                        let _ = st
                            .set_artifact(lease, v1::ArtifactKind::PlanFile, "sha256:plan")
                            .await;
                        let ev = [v1::Event {
                            seq: 1,
                            unix_ms: 1,
                            stream: 1,
                            line: "x".into(),
                        }];
                        let ev_ok = st.add_events(lease, &ev).await.is_ok();
                        match st.complete(&req, &p).await {
                            Ok(()) => {
                                assert!(ev_ok, "a completion accepted where events were fenced")
                            }
                            Err(Error::Conflict(_)) => fenced += 1,
                            Err(e) => panic!("{name} step {step}: {e}"),
                        }
                    }
                    8 if !runs_.is_empty() => {
                        let r = runs_[rng.below(runs_.len())].clone();
                        if rng.below(2) == 0 {
                            let _ = st.approve(&r, "bob", "", &p).await;
                        } else {
                            let _ = st.cancel(&r, "carol", "").await;
                        }
                    }
                    9 => {
                        // A coordinator restart: a fresh store on the same database.
                        let url = if st.is_postgres() {
                            None
                        } else {
                            Some(format!("sqlite://{}/t.db", d.path()))
                        };
                        if let Some(url) = url {
                            drop(st);
                            st = Store::connect(&url).await.unwrap();
                        }
                    }
                    _ => {}
                }
                check_invariants(&st, step, seed).await;
            }
            assert!(granted > 10 && refused > 5 && fenced > 0, "{name}: the sequence exercised claims ({granted}), refusals ({refused}) and fencing ({fenced})");
            let count = |sql: &'static str| {
                let st = st.clone();
                async move { i(&sqlx::query(sql).fetch_one(&st.pool).await.unwrap(), "n").unwrap() }
            };
            applied += count("SELECT COUNT(*) AS n FROM runs WHERE state = 'applied'").await;
            interrupted +=
                count("SELECT COUNT(*) AS n FROM runs WHERE state = 'interrupted'").await;
            redispatched += count(
                "SELECT COUNT(*) AS n FROM task_attempts WHERE phase = 'plan' AND attempt > 1",
            )
            .await;
            waited += count("SELECT COUNT(*) AS n FROM transitions WHERE from_state = 'pending' AND to_state = 'queued'").await;
        }
    }
    // The sequences reached every path that matters, so the invariants were tested on them.
    assert!(
        applied > 0 && interrupted > 0 && redispatched > 0 && waited > 0,
        "coverage: applied {applied}, interrupted {interrupted}, re-dispatched plans {redispatched}, pending runs started {waited}"
    );
}

#[tokio::test]
async fn runs_that_apply_take_turns_on_a_workspace() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        let a = st.submit(new_run("turns", false), &p).await.unwrap();
        let b = st.submit(new_run("turns", false), &p).await.unwrap();
        let mut plan_only = new_run("turns", false);
        plan_only.kind = RunKind::PlanOnly;
        let c = st.submit(plan_only, &p).await.unwrap();
        assert_eq!(
            (a.state, b.state, c.state),
            (RunState::Queued, RunState::Pending, RunState::Queued),
            "{name}: plan-only runs do not wait"
        );
        st.reap(&p).await.unwrap();
        assert_eq!(
            st.get_run(&b.id).await.unwrap().state,
            RunState::Pending,
            "{name}: still held by {}",
            a.id
        );
        st.cancel(&a.id, "carol", "").await.unwrap();
        st.reap(&p).await.unwrap();
        assert_eq!(
            st.get_run(&b.id).await.unwrap().state,
            RunState::Queued,
            "{name}: started once the workspace was free"
        );
        let t = st.transitions(&b.id).await.unwrap();
        assert!(
            t[0].reason.contains(&format!("waits for run {}", a.id)),
            "{:?}",
            t[0]
        );
        assert!(t[1].reason.contains("is free"), "{:?}", t[1]);
    }
}

/// A hook that records, in the same transaction, every run it sees rejected.
struct NoteRejected;

#[tonic::async_trait]
impl crate::lifecycle::events::OnRunEvents for NoteRejected {
    async fn on_run_events(
        &self,
        _store: &Store,
        tx: &mut Tx,
        events: &[crate::runs::events::RunEvent],
    ) -> Result<()> {
        for e in events {
            if let crate::runs::events::RunEvent::Moved {
                run_id,
                to: RunState::Rejected,
                ..
            } = e
            {
                note(
                    tx,
                    run_id,
                    RunState::Rejected,
                    "hook",
                    "seen in the same transaction",
                    now_ms(),
                )
                .await?;
            }
            if let crate::runs::events::RunEvent::Moved {
                to: RunState::Cancelled,
                ..
            } = e
            {
                return Err(Error::Conflict("the hook refuses cancels".into()));
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_before_commit_hook_reacts_in_the_same_transaction_and_can_roll_it_back() {
    for (name, mut st, _g, _d) in stores().await {
        st.set_hook(std::sync::Arc::new(NoteRejected));
        let p = policy();
        let mut watch = st.subscribe();
        let run = st.submit(new_run("hook/a", false), &p).await.unwrap();
        assert_eq!(
            watch.recv().await.unwrap().run_id,
            run.id,
            "{name}: watchers told after commit"
        );
        let env =
            v1::TaskEnvelope::decode(st.unsent(1).await.unwrap()[0].payload.as_slice()).unwrap();
        let g = st.claim("a1", &env.task_id, 1, &p).await.unwrap().unwrap();
        st.complete(
            &complete(
                &g.task,
                g.epoch,
                &g.lease_token,
                v1::Outcome::Succeeded,
                true,
            ),
            &p,
        )
        .await
        .unwrap();
        st.reject(&run.id, "bob", "no").await.unwrap();
        let t = st.transitions(&run.id).await.unwrap();
        let last = t.last().unwrap();
        assert_eq!(
            (last.actor.as_str(), last.reason.as_str()),
            ("hook", "seen in the same transaction"),
            "{name}: the hook wrote in the rejecting transaction"
        );
        // A hook error rolls the whole command back.
        let other = st.submit(new_run("hook/b", false), &p).await.unwrap();
        assert!(st.cancel(&other.id, "carol", "").await.is_err(), "{name}");
        assert_eq!(
            st.get_run(&other.id).await.unwrap().state,
            RunState::Queued,
            "{name}: nothing of the cancel was committed"
        );
        assert_eq!(
            st.ended_counts().get("rejected"),
            Some(&1),
            "{name}: ended runs are counted after commit"
        );
        assert_eq!(
            st.ended_counts().get("cancelled"),
            None,
            "{name}: a rolled-back end is not counted"
        );
    }
}
