//! The run/lease machine under random sequences of deliver, claim, heartbeat, expire, report and restart, with its invariants checked at every step.

use super::*;

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
            let mut delivered: Vec<(String, u32, String)> = Vec::new();
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
                            let id = opened(&row.payload).id;
                            delivered.push((row.task_id.clone(), row.attempt, id));
                        }
                    }
                    3 | 4 if !delivered.is_empty() => {
                        // The agent acks at claim, granted or not: the message is gone (duplicates
                        // may still be queued behind it).
                        let (t, a, envelope) = delivered.remove(rng.below(delivered.len()));
                        let agent = format!("a{}", rng.below(3));
                        match st.claim(&agent, &t, a, &envelope, &p).await.unwrap() {
                            crate::lifecycle::ClaimOutcome::Granted(g) => {
                                granted += 1;
                                leases.push((t, a, g.epoch, agent, g.lease_token));
                            }
                            crate::lifecycle::ClaimOutcome::Refused(_)
                            | crate::lifecycle::ClaimOutcome::Replayed(_) => refused += 1,
                        }
                    }
                    5 if !leases.is_empty() => {
                        let (t, a, e, agent, tok) = leases[rng.below(leases.len())].clone();
                        let _ = st
                            .heartbeat(
                                &agent,
                                &[crate::lifecycle::HeldLease {
                                    task_id: t,
                                    attempt: a,
                                    epoch: e,
                                    token: tok,
                                }],
                                false,
                                &p,
                            )
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
                                envelope_id: String::new(),
                                envelope_expires_ms: 0,
                            },
                            e,
                            &tok,
                            outcome,
                            rng.below(2) == 0,
                        );
                        req.attempt = a;
                        let _ = st
                            .set_artifact(lease, crate::runs::Artifact::PlanFile, "sha256:plan")
                            .await;
                        let ev = [crate::runs::LogLine {
                            seq: 1,
                            unix_ms: 1,
                            stream: 1,
                            line: "x".into(),
                        }];
                        let ev_ok = st.add_events(lease, &ev).await.is_ok();
                        match st.complete_task(&req, &p).await {
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
