//! Runs through their life on both databases: plan, approve, apply; limits; turns per workspace; unroutable tasks and cancels.

use super::*;

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
        let env = opened(&out[0].payload);
        let g = st
            .claim("a1", &env.task_id, 1, &env.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        assert_eq!(
            g.run.limits.memory_bytes,
            1 << 28,
            "{name}: the claim carries them"
        );
        let mut req = complete(&g.task, g.epoch, &g.lease_token, v1::Outcome::Failed, false);
        req.error = "killed for memory: ...".into();
        req.limit_hit = "memory".into();
        st.complete_task(&req, &p).await.unwrap();
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
        let env = opened(&out[0].payload);
        assert_eq!((env.attempt, env.workspace.as_str()), (1, "ml/a100"));
        st.mark_sent(out[0].id).await.unwrap();

        let g = st
            .claim("a1", &env.task_id, 1, &env.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        assert_eq!(g.run.state, RunState::Planning);
        let dup = st.claim("a2", &env.task_id, 1, &env.id, &p).await.unwrap();
        assert!(
            dup.granted().is_none(),
            "{name}: a duplicate delivery must not be claimed twice"
        );
        let answer = st
            .heartbeat(
                "a1",
                &[crate::lifecycle::HeldLease {
                    task_id: env.task_id.clone(),
                    attempt: 1,
                    epoch: g.epoch,
                    token: g.lease_token.clone(),
                }],
                false,
                &p,
            )
            .await
            .unwrap();
        assert!(answer.cancel.is_empty() && answer.lost.is_empty());
        st.set_artifact(proof(&g), crate::runs::Artifact::PlanFile, "sha256:plan")
            .await
            .unwrap();
        let c = complete(
            &g.task,
            g.epoch,
            &g.lease_token,
            v1::Outcome::Succeeded,
            true,
        );
        st.complete_task(&c, &p).await.unwrap();
        st.complete_task(&c, &p)
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
        let env2 = opened(&out[0].payload);
        assert_eq!(env2.phase, v1::Phase::Apply as i32);
        let g2 = st
            .claim("a2", &env2.task_id, 1, &env2.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        assert!(g2.epoch > g.epoch, "{name}: epochs only grow");
        st.complete_task(
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
        let env = opened(&st.unsent(1).await.unwrap()[0].payload);
        assert!(
            st.claim("a1", &env.task_id, 1, &env.id, &p)
                .await
                .unwrap()
                .granted()
                .is_none(),
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

#[tokio::test]
async fn runs_are_listed_by_every_tag_they_carry() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        let mut a = new_run("w1", false);
        a.tags = BTreeMap::from([
            ("dag_id".into(), "gpu".into()),
            ("team".into(), "ml".into()),
        ]);
        let a = st.submit(a, &p).await.unwrap();
        let mut b = new_run("w2", false);
        b.tags = BTreeMap::from([("dag_id".into(), "gpu".into())]);
        let b = st.submit(b, &p).await.unwrap();
        let mut c = new_run("w3", false);
        c.tags = BTreeMap::new();
        st.submit(c, &p).await.unwrap();
        let ids = |tags: &[(&str, &str)]| {
            let f = RunFilter {
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                limit: 10,
                ..RunFilter::default()
            };
            let st = &st;
            async move {
                let mut v: Vec<String> = st
                    .list_runs(&f)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                v.sort();
                v
            }
        };
        let mut both = vec![a.id.clone(), b.id.clone()];
        both.sort();
        assert_eq!(ids(&[("dag_id", "gpu")]).await, both, "{name}");
        assert_eq!(
            ids(&[("dag_id", "gpu"), ("team", "ml")]).await,
            vec![a.id.clone()],
            "{name}"
        );
        assert!(ids(&[("dag_id", "cpu")]).await.is_empty(), "{name}");
        assert_eq!(ids(&[]).await.len(), 3, "{name}");
        let shown = st.get_run(&a.id).await.unwrap();
        assert_eq!(shown.tags["team"], "ml", "{name}");
        // Paging, one run a page: newest first, each run once.
        let (mut seen, mut before) = (Vec::new(), String::new());
        loop {
            let f = RunFilter {
                limit: 1,
                before: before.clone(),
                ..RunFilter::default()
            };
            let page = st.list_runs(&f).await.unwrap();
            let Some(r) = page.first() else { break };
            before = r.id.clone();
            seen.push(r.id.clone());
        }
        assert_eq!(seen.len(), 3, "{name}: {seen:?}");
        seen.dedup();
        assert_eq!(seen.len(), 3, "{name}");
    }
}

/// Two coordinators on one PostgreSQL (two stores on one database), or one on SQLite,
/// submitting to one workspace at once: exactly one run gets the workspace, the rest wait.
#[tokio::test]
async fn concurrent_submits_to_one_workspace_take_turns() {
    for (name, st, pg, _d) in stores().await {
        let other = second_store(&st, &pg).await;
        let mut submits = Vec::new();
        for i in 0..16 {
            let s = if i % 2 == 0 {
                st.clone()
            } else {
                other.clone()
            };
            submits.push(tokio::spawn(async move {
                s.submit(new_run("race/ws", false), &policy()).await
            }));
        }
        for s in submits {
            s.await.unwrap().unwrap();
        }
        let f = RunFilter {
            workspace: "race/ws".into(),
            limit: 100,
            ..RunFilter::default()
        };
        let runs = st.list_runs(&f).await.unwrap();
        let queued = runs.iter().filter(|r| r.state == RunState::Queued).count();
        let pending = runs.iter().filter(|r| r.state == RunState::Pending).count();
        assert_eq!(
            (queued, pending),
            (1, 15),
            "{name}: one run holds the workspace"
        );
    }
}

/// A retried submit with the same idempotency key gets the first one's run, also when both
/// arrive at once (on PostgreSQL through two stores); another request under the key is refused.
#[tokio::test]
async fn a_retried_submit_with_its_idempotency_key_starts_one_run() {
    for (name, st, pg, _d) in stores().await {
        let other = second_store(&st, &pg).await;
        let keyed = |sha: &str| {
            let mut n = new_run("idem/ws", false);
            n.idempotency = Some(Idempotency {
                key: "retry-1".into(),
                request_sha256: sha.into(),
            });
            n
        };
        let mut all = Vec::new();
        for i in 0..6 {
            let s = if i % 2 == 0 {
                st.clone()
            } else {
                other.clone()
            };
            let n = keyed("same");
            all.push(tokio::spawn(
                async move { s.submit_once(n, &policy()).await },
            ));
        }
        let mut ids = Vec::new();
        for a in all {
            ids.push(a.await.unwrap().unwrap().id);
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{name}: one run for one key: {ids:?}");
        let e = st
            .submit_once(keyed("different"), &policy())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unprocessable(_)), "{name}: {e}");
        let f = RunFilter {
            workspace: "idem/ws".into(),
            limit: 10,
            ..RunFilter::default()
        };
        assert_eq!(st.list_runs(&f).await.unwrap().len(), 1, "{name}");
        let mut n = new_run("idem/ws", false);
        n.actor = "someone-else".into();
        n.idempotency = keyed("same").idempotency;
        let theirs = st.submit_once(n, &policy()).await.unwrap();
        assert_ne!(theirs.id, ids[0], "{name}: keys are per actor");
    }
}

/// Periodic work is one coordinator's at a time: the holder renews; another takes over only
/// after expiry, with the next epoch; the old holder then cannot renew.
#[tokio::test]
async fn the_periodic_work_lease_has_one_holder_and_moves_on_expiry() {
    for (name, st, _g, _d) in stores().await {
        let a = st.try_lead("work", "a", 1_000, 100).await.unwrap().unwrap();
        assert_eq!((a.epoch, a.took_over_from.clone()), (1, None), "{name}");
        assert!(
            st.try_lead("work", "b", 1_050, 100)
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );
        let renewed = st.try_lead("work", "a", 1_090, 100).await.unwrap().unwrap();
        assert_eq!(renewed.epoch, 1, "{name}: a renewal keeps the epoch");
        assert!(
            st.try_lead("work", "b", 1_150, 100)
                .await
                .unwrap()
                .is_none(),
            "{name}: renewed"
        );
        let b = st.try_lead("work", "b", 1_200, 100).await.unwrap().unwrap();
        assert_eq!(
            (b.epoch, b.took_over_from.as_deref()),
            (2, Some("a")),
            "{name}"
        );
        assert!(
            st.try_lead("work", "a", 1_210, 100)
                .await
                .unwrap()
                .is_none(),
            "{name}: a lost it"
        );
        assert_eq!(
            st.holder_of("work").await.unwrap().unwrap().0,
            "b",
            "{name}"
        );
    }
}

#[tokio::test]
async fn run_list_pages_with_a_cursor_newest_first_with_and_without_filters_on_both_backends() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        let mut made = Vec::new();
        for i in 0..7 {
            let mut n = new_run(&format!("page/ws-{}", i % 2), false);
            n.kind = RunKind::PlanOnly;
            made.push(st.submit(n, &p).await.unwrap().id);
        }
        let page = |workspace: &str, before: &str| RunFilter {
            workspace: workspace.into(),
            state: String::new(),
            tags: BTreeMap::new(),
            before: before.into(),
            limit: 3,
        };
        let mut seen = Vec::new();
        let mut before = String::new();
        loop {
            let runs = st.list_runs(&page("", &before)).await.unwrap();
            seen.extend(runs.iter().map(|r| r.id.clone()));
            match runs.last() {
                Some(last) if runs.len() == 3 => before = last.id.clone(),
                _ => break,
            }
        }
        // Newest first; runs made in the same millisecond in id order, as the list orders them.
        let mut order = Vec::new();
        for id in &made {
            let r = st.get_run(id).await.unwrap();
            order.push((r.created_ms, r.id, r.workspace));
        }
        order.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        let newest_first: Vec<String> = order.iter().map(|o| o.1.clone()).collect();
        assert_eq!(seen, newest_first, "{name}: every run once, newest first");
        let cursor = &order[1].1;
        let ws1 = st.list_runs(&page("page/ws-1", cursor)).await.unwrap();
        let ids: Vec<&str> = ws1.iter().map(|r| r.id.as_str()).collect();
        let expected: Vec<&str> = order[2..]
            .iter()
            .filter(|o| o.2 == "page/ws-1")
            .map(|o| o.1.as_str())
            .take(3)
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(ids, expected, "{name}: a workspace's, from the cursor");
        let mut tagged = page("", "");
        tagged.tags = BTreeMap::from([("dag_id".into(), "nightly".into())]);
        tagged.state = "queued".into();
        assert_eq!(
            st.list_runs(&tagged).await.unwrap().len(),
            3,
            "{name}: tags and state"
        );
    }
}
