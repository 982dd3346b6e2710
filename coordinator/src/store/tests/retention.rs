//! Log retention on both databases: the reaper deletes the logs of runs that ended longer ago
//! than `--log-retention`, records each in the audit trail once, leaves recent and unfinished
//! runs alone; a pruned run's log says when and why.

use super::*;
use crate::audit::AuditKind;
use crate::runs::RunKind;

/// A plan-only run that logged one line and ended (planned); its id.
async fn ended_with_a_log(st: &Store, ws: &str, p: &Policy) -> String {
    let mut n = new_run(ws, false);
    n.kind = RunKind::PlanOnly;
    let run = st.submit(n, p).await.unwrap();
    let rows = st.unsent(100).await.unwrap();
    let env = rows
        .iter()
        .map(|r| opened(&r.payload))
        .find(|e| e.run_id == run.id)
        .unwrap();
    let g = st
        .claim("a1", &env.task_id, 1, &env.id, p)
        .await
        .unwrap()
        .granted()
        .unwrap();
    let line = crate::runs::LogLine {
        seq: 1,
        unix_ms: 1,
        stream: 1,
        line: format!("{ws} planned"),
    };
    st.add_events(proof(&g), &[line]).await.unwrap();
    let done = complete(
        &g.task,
        g.epoch,
        &g.lease_token,
        v1::Outcome::Succeeded,
        true,
    );
    st.complete_task(&done, p).await.unwrap();
    let ended = st.get_run(&run.id).await.unwrap();
    assert!(
        crate::runs::is_terminal(ended.state, RunKind::PlanOnly),
        "{:?}",
        ended.state
    );
    run.id
}

async fn age(st: &Store, run_id: &str, by_ms: i64) {
    sqlx::query("UPDATE runs SET updated_ms = updated_ms - $1 WHERE id = $2")
        .bind(by_ms)
        .bind(run_id)
        .execute(&st.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn old_finished_logs_are_pruned_once_and_audited_recent_and_running_ones_stay() {
    for (name, st, _g, _d) in stores().await {
        let mut p = policy();
        let old = ended_with_a_log(&st, "keep/old", &p).await;
        let recent = ended_with_a_log(&st, "keep/recent", &p).await;
        let waiting = st.submit(new_run("keep/waiting", false), &p).await.unwrap();
        age(&st, &old, 3_600_000).await;
        age(&st, &waiting.id, 3_600_000).await;

        assert!(
            st.reap(&p)
                .await
                .unwrap()
                .iter()
                .all(|l| !l.contains("log of run")),
            "{name}: off by default"
        );
        p.log_retention_ms = 60_000;
        let did = st.reap(&p).await.unwrap();
        let pruned: Vec<&String> = did.iter().filter(|l| l.contains("log of run")).collect();
        assert_eq!(
            pruned,
            [&format!(
                "log of run {old} deleted (1 lines, --log-retention)"
            )],
            "{name}"
        );

        let note = st.logs(&old, 0).await.unwrap();
        assert_eq!(note.len(), 1, "{name}");
        assert_eq!(note[0].stream, v1::LogStream::System as i64);
        assert!(
            note[0].line.contains("deleted at") && note[0].line.contains("--log-retention"),
            "{name}: {}",
            note[0].line
        );
        assert_eq!(
            st.logs(&recent, 0).await.unwrap()[0].line,
            "keep/recent planned",
            "{name}"
        );
        assert_eq!(
            st.get_run(&waiting.id).await.unwrap().state,
            RunState::Queued,
            "{name}"
        );

        let entries = st
            .audit_entries(&AuditFilter {
                kind: Some(AuditKind::LogsPruned),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(entries.len(), 1, "{name}");
        assert_eq!(entries[0].run_id, old);
        assert_eq!(entries[0].workspace, "keep/old");
        let detail: serde_json::Value = serde_json::from_str(&entries[0].detail).unwrap();
        assert_eq!(detail["lines"], 1, "{name}");
        assert_eq!(detail["retention"], "1m", "{name}");

        // Once: a second sweep (or a second coordinator) finds nothing more to do.
        let again = st.reap(&p).await.unwrap();
        assert!(
            again.iter().all(|l| !l.contains("log of run")),
            "{name}: {again:?}"
        );
        assert_eq!(
            st.audit_entries(&AuditFilter {
                kind: Some(AuditKind::LogsPruned),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
            1
        );
    }
}
