//! The audit log on both databases: a run's life enters it in the transactions that make it;
//! the chain verifies, names an altered, a deleted and a moved entry, and stays one chain under
//! concurrent appends (on PostgreSQL from two stores, as two coordinators would).

use super::*;
use crate::audit::{AuditEntry, AuditKind, Broken};

/// Runs `sql` against the store's own database (the tests' stand-in for someone with database
/// access tampering with the log).
async fn tamper(st: &Store, sql: &str) {
    sqlx::query(sql).execute(&st.pool).await.unwrap();
}

async fn broken(st: &Store) -> Option<Broken> {
    st.verify_audit().await.unwrap().broken
}

#[tokio::test]
async fn a_plan_approve_apply_run_is_audited_with_its_serials() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        let run = st.submit(new_run("ml/audit", false), &p).await.unwrap();
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
        let done = complete(
            &g.task,
            g.epoch,
            &g.lease_token,
            v1::Outcome::Succeeded,
            true,
        );
        st.complete_task(&done, &p).await.unwrap();
        st.approve(&run.id, "bob", "lgtm", &p).await.unwrap();
        let env2 = opened(&st.unsent(1).await.unwrap()[0].payload);
        let g2 = st
            .claim("a2", &env2.task_id, 1, &env2.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        assert!(st
            .lock_state("ml/audit", "L1", "{}", &g2.task)
            .await
            .unwrap()
            .is_ok());
        st.write_state("ml/audit", b"s1", 1, "lin", Some("L1"), &g2.task, "a2")
            .await
            .unwrap();
        st.write_state("ml/audit", b"s2", 2, "lin", Some("L1"), &g2.task, "a2")
            .await
            .unwrap();
        assert!(st.unlock_state("ml/audit", "L1", &g2.task).await.unwrap());
        let done = complete(
            &g2.task,
            g2.epoch,
            &g2.lease_token,
            v1::Outcome::Succeeded,
            true,
        );
        st.complete_task(&done, &p).await.unwrap();

        let f = AuditFilter {
            run_id: run.id.clone(),
            limit: 100,
            ..Default::default()
        };
        let entries = st.audit_entries(&f).await.unwrap();
        let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "run_submitted",
                "run_approved",
                "apply_started",
                "state_locked",
                "state_unlocked",
                "apply_finished"
            ],
            "{name}"
        );
        let detail = |k: &str| -> serde_json::Value {
            let e = entries.iter().find(|e| e.kind == k).unwrap();
            serde_json::from_str(&e.detail).unwrap()
        };
        assert_eq!(entries[0].actor, "alice", "{name}");
        assert_eq!(detail("run_submitted")["commit"], "abc");
        assert_eq!(detail("run_submitted")["pipeline_id"], "p1");
        assert_eq!(entries[1].actor, "bob");
        assert_eq!(detail("apply_started")["plan_digest"], "sha256:plan");
        assert_eq!(
            detail("apply_started")["serial_before"],
            serde_json::Value::Null
        );
        let fin = detail("apply_finished");
        assert_eq!(
            (fin["serial_before"].clone(), fin["serial_after"].clone()),
            (serde_json::Value::Null, 2.into()),
            "{name}"
        );
        assert_eq!(fin["versions"], serde_json::json!([1, 2]));
        assert!(entries.iter().all(|e| e.workspace == "ml/audit"));
        let v = st.verify_audit().await.unwrap();
        assert_eq!((v.checked, v.broken), (6, None), "{name}");
        let only = AuditFilter {
            kind: Some(AuditKind::ApplyFinished),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(st.audit_entries(&only).await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn verify_names_an_altered_a_moved_and_a_deleted_entry() {
    for (name, st, _g, _d) in stores().await {
        for k in 0..6 {
            let e = AuditEntry::new(AuditKind::StateLocked, &format!("u{k}")).workspace("w");
            st.audit_now(e).await.unwrap();
        }
        let v = st.verify_audit().await.unwrap();
        assert_eq!((v.checked, v.head.0, v.broken), (6, 6, None), "{name}");

        tamper(&st, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 5").await;
        assert_eq!(
            broken(&st).await,
            Some(Broken::Altered { seq: 5 }),
            "{name}"
        );
        tamper(&st, "UPDATE audit_log SET actor = 'u4' WHERE seq = 5").await;
        assert_eq!(broken(&st).await, None, "{name}: restored");

        for sql in [
            "UPDATE audit_log SET seq = -1 WHERE seq = 2",
            "UPDATE audit_log SET seq = 2 WHERE seq = 4",
            "UPDATE audit_log SET seq = 4 WHERE seq = -1",
        ] {
            tamper(&st, sql).await;
        }
        assert_eq!(
            broken(&st).await,
            Some(Broken::Moved {
                seq: 2,
                written_as: 4
            }),
            "{name}"
        );
        for sql in [
            "UPDATE audit_log SET seq = -1 WHERE seq = 2",
            "UPDATE audit_log SET seq = 2 WHERE seq = 4",
            "UPDATE audit_log SET seq = 4 WHERE seq = -1",
        ] {
            tamper(&st, sql).await;
        }
        assert_eq!(broken(&st).await, None, "{name}: swapped back");

        tamper(&st, "DELETE FROM audit_log WHERE seq = 3").await;
        let v = st.verify_audit().await.unwrap();
        assert_eq!(
            v.broken,
            Some(Broken::Missing { seq: 3, next: 4 }),
            "{name}"
        );
        assert_eq!((v.checked, v.head.0), (2, 2), "{name}: good up to 2");
    }
}

#[tokio::test]
async fn concurrent_appends_keep_one_chain() {
    for (name, st, g, _d) in stores().await {
        // On PostgreSQL, a second coordinator's store on the same database appends too.
        let other = match &g {
            Some(pg) => {
                let url = format!("{}/{}", pg.admin.rsplit_once('/').unwrap().0, pg.name);
                Store::connect(&url).await.unwrap()
            }
            None => st.clone(),
        };
        let appends = (0..24).map(|k| {
            let st = if k % 2 == 0 {
                st.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                let e =
                    AuditEntry::new(AuditKind::AuthFailed, "").detail(serde_json::json!({"k": k}));
                st.audit_now(e).await
            })
        });
        for h in appends.collect::<Vec<_>>() {
            h.await.unwrap().unwrap();
        }
        let v = st.verify_audit().await.unwrap();
        assert_eq!((v.checked, v.broken), (24, None), "{name}");
        let latest = AuditFilter {
            limit: 5,
            latest: true,
            ..Default::default()
        };
        let seqs: Vec<i64> = st
            .audit_entries(&latest)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [20, 21, 22, 23, 24], "{name}: the newest, in order");
    }
}

#[tokio::test]
async fn human_locks_force_unlocks_and_rollbacks_are_audited() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        st.submit(new_run("ops/db", false), &p).await.unwrap();
        let env = opened(&st.unsent(1).await.unwrap()[0].payload);
        let g = st
            .claim("a1", &env.task_id, 1, &env.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        for (data, serial) in [(&b"one"[..], 1), (&b"two"[..], 2)] {
            st.write_state("ops/db", data, serial, "L", None, &g.task, "a1")
                .await
                .unwrap();
        }
        let lock = st.lock_state_human("ops/db", "alice", "maintenance");
        assert!(lock.await.unwrap().is_ok(), "{name}");
        st.unlock_state_human("ops/db", "alice", false, "done")
            .await
            .unwrap();
        let lock = st.lock_state_human("ops/db", "alice", "again");
        assert!(lock.await.unwrap().is_ok(), "{name}");
        st.unlock_state_human("ops/db", "bob", true, "alice is away")
            .await
            .unwrap();
        st.rollback_state("ops/db", 1, "bob", "bad deploy")
            .await
            .unwrap();
        let f = AuditFilter {
            workspace: "ops/db".into(),
            limit: 100,
            ..Default::default()
        };
        let got: Vec<(String, String)> = st
            .audit_entries(&f)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind.starts_with("state_"))
            .map(|e| (e.kind, e.actor))
            .collect();
        let want = [
            ("state_locked", "alice"),
            ("state_unlocked", "alice"),
            ("state_locked", "alice"),
            ("state_force_unlocked", "bob"),
            ("state_rolled_back", "bob"),
        ]
        .map(|(k, a)| (k.to_string(), a.to_string()));
        assert_eq!(got, want, "{name}");
        let rb = st.audit_entries(&f).await.unwrap().pop().unwrap();
        let d: serde_json::Value = serde_json::from_str(&rb.detail).unwrap();
        assert_eq!(
            (
                d["to_version"].as_i64(),
                d["new_version"].as_i64(),
                d["serial"].as_i64()
            ),
            (Some(1), Some(3), Some(1)),
            "{name}"
        );
    }
}
