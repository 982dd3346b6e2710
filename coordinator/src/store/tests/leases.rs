//! Leases on both databases: an expired plan lease re-dispatches and fences the old attempt; an expired apply lease interrupts and releases the lock.

use super::*;

#[tokio::test]
async fn expired_plan_lease_redispatches_and_fences_the_old_attempt() {
    for (name, st, _g, _d) in stores().await {
        let mut p = policy();
        let run = st.submit(new_run("w", false), &p).await.unwrap();
        let env = opened(&st.unsent(1).await.unwrap()[0].payload);
        p.lease_ttl_ms = -1; // the lease is born expired
        let g = st
            .claim("a1", &env.task_id, 1, &env.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        let did = st.reap(&p).await.unwrap();
        assert_eq!(did.len(), 1, "{name}: {did:?}");
        let r = st.get_run(&run.id).await.unwrap();
        assert_eq!(r.state, RunState::Queued);
        let rows = st.unsent(10).await.unwrap();
        assert_eq!(rows.len(), 2, "{name}: attempt 2 is queued for publishing");
        assert_eq!(rows[1].attempt, 2);
        let second = opened(&rows[1].payload);
        assert_ne!(
            second.id, env.id,
            "{name}: attempt 2 has an envelope of its own"
        );
        let late = [crate::runs::LogLine {
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
            st.complete_task(
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
            st.claim("a1", &env.task_id, 1, &env.id, &p)
                .await
                .unwrap()
                .granted()
                .is_none(),
            "attempt 1 is stale"
        );
        p.lease_ttl_ms = 60_000;
        let g2 = st
            .claim("a2", &env.task_id, 2, &second.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        st.add_events(proof(&g2), &late).await.unwrap();
        assert_eq!(
            st.add_events(proof(&g2), &late).await.unwrap(),
            0,
            "retried lines are absorbed"
        );
        st.complete_task(
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
        let env = opened(&st.unsent(1).await.unwrap()[0].payload);
        st.mark_sent(st.unsent(1).await.unwrap()[0].id)
            .await
            .unwrap();
        let g = st
            .claim("a1", &env.task_id, 1, &env.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        st.set_artifact(proof(&g), crate::runs::Artifact::PlanFile, "sha256:plan")
            .await
            .unwrap();
        st.complete_task(
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
        let env2 = opened(&row2.payload);
        st.mark_sent(row2.id).await.unwrap();
        p.lease_ttl_ms = -1;
        let g2 = st
            .claim("a1", &env2.task_id, 1, &env2.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
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
        let f = AuditFilter {
            run_id: run.id.clone(),
            limit: 100,
            ..Default::default()
        };
        let audit: Vec<(String, String)> = st
            .audit_entries(&f)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.actor))
            .collect();
        let fence = (
            "state_force_unlocked".to_string(),
            "coordinator".to_string(),
        );
        assert!(
            audit.contains(&fence),
            "{name}: the fence is audited: {audit:?}"
        );
        assert_eq!(audit.last().unwrap().0, "apply_finished", "{name}");
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
