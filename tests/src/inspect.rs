//! What no public API answers, read from the coordinator's own database (SQLite or PostgreSQL):
//! the ids, epochs and attempts of a run's tasks, the stored bundles, and the chaos test's
//! invariants; and tampering with the audit log as someone with database access could. Tests
//! call these by name so they read like the behaviour, not like SQL.

use crate::Cluster;
use sqlx::{Connection, Row};

/// One claim of a task, as the coordinator recorded it (`task_attempts`).
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub task_id: String,
    pub phase: String,
    pub attempt: i64,
    pub epoch: i64,
    /// Empty while the attempt runs; then `succeeded`, `failed`, `lost`, ...
    pub outcome: String,
}

impl Cluster {
    /// A connection to the coordinator's database, whichever it is.
    async fn database(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.db_url)
            .await
            .expect("open the coordinator's database")
    }

    /// Every claim of the run's tasks, in the order they were claimed.
    pub async fn attempts(&self, run_id: &str) -> Vec<Attempt> {
        let mut db = self.database().await;
        sqlx::query(
            "SELECT task_id, phase, attempt, epoch, outcome FROM task_attempts WHERE run_id = $1 ORDER BY claimed_ms, attempt",
        )
        .bind(run_id)
        .fetch_all(&mut db)
        .await
        .unwrap()
        .iter()
        .map(|r| Attempt {
            task_id: r.get("task_id"),
            phase: r.get("phase"),
            attempt: r.get("attempt"),
            epoch: r.get("epoch"),
            outcome: r.get("outcome"),
        })
        .collect()
    }

    /// The run's `phase` task (`plan` or `apply`) as the coordinator has it: (task id, epoch).
    pub async fn task_of(&self, run_id: &str, phase: &str) -> (String, u64) {
        let mut db = self.database().await;
        let row = sqlx::query("SELECT id, epoch FROM tasks WHERE run_id = $1 AND phase = $2")
            .bind(run_id)
            .bind(phase)
            .fetch_one(&mut db)
            .await
            .unwrap_or_else(|e| panic!("run {run_id} has no {phase} task: {e}"));
        (row.get("id"), row.get::<i64, _>("epoch") as u64)
    }

    /// Bundles the coordinator stores.
    pub async fn blob_count(&self) -> i64 {
        let mut db = self.database().await;
        sqlx::query("SELECT COUNT(*) AS n FROM blobs")
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get::<i64, _>("n")
    }

    /// Runs whose apply was claimed more than once.
    pub async fn runs_with_repeated_apply(&self) -> Vec<String> {
        let mut db = self.database().await;
        sqlx::query("SELECT run_id FROM task_attempts WHERE phase = 'apply' GROUP BY run_id HAVING COUNT(*) > 1")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("run_id"))
            .collect()
    }

    /// State versions accepted from an apply attempt after it was fenced (lost): (workspace,
    /// version).
    pub async fn state_writes_after_fencing(&self) -> Vec<(String, i64)> {
        let mut db = self.database().await;
        sqlx::query("SELECT v.workspace, v.version FROM state_versions v JOIN tasks t ON t.run_id = v.run_id JOIN task_attempts a ON a.task_id = t.id AND a.attempt = v.attempt WHERE a.phase = 'apply' AND a.outcome = 'lost' AND v.created_ms > a.ended_ms")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("workspace"), r.get("version")))
            .collect()
    }

    /// Tasks still queued or running.
    pub async fn open_tasks(&self) -> i64 {
        let mut db = self.database().await;
        sqlx::query("SELECT COUNT(*) AS n FROM tasks WHERE state IN ('queued', 'running')")
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get::<i64, _>("n")
    }

    /// Changes the actor of audit entry `seq` in place; returns the actor it had.
    pub async fn alter_audit_actor(&self, seq: i64, actor: &str) -> String {
        let mut db = self.database().await;
        let old: String = sqlx::query("SELECT actor FROM audit_log WHERE seq = $1")
            .bind(seq)
            .fetch_one(&mut db)
            .await
            .unwrap_or_else(|e| panic!("no audit entry {seq}: {e}"))
            .get("actor");
        sqlx::query("UPDATE audit_log SET actor = $1 WHERE seq = $2")
            .bind(actor)
            .bind(seq)
            .execute(&mut db)
            .await
            .unwrap();
        old
    }

    /// Deletes audit entry `seq`.
    pub async fn delete_audit_entry(&self, seq: i64) {
        let mut db = self.database().await;
        let r = sqlx::query("DELETE FROM audit_log WHERE seq = $1")
            .bind(seq)
            .execute(&mut db)
            .await
            .unwrap();
        assert_eq!(r.rows_affected(), 1, "no audit entry {seq}");
    }

    /// Swaps the positions of audit entries `a` and `b` (each keeps its content and hashes,
    /// under the other's sequence number).
    pub async fn swap_audit_entries(&self, a: i64, b: i64) {
        let mut db = self.database().await;
        for (from, to) in [(a, -1), (b, a), (-1, b)] {
            sqlx::query("UPDATE audit_log SET seq = $1 WHERE seq = $2")
                .bind(to)
                .bind(from)
                .execute(&mut db)
                .await
                .unwrap();
        }
    }
}

impl Cluster {
    /// The fault suites' promises about what is left once every run has ended: no apply
    /// claimed twice, no state write accepted from a fenced attempt, no task open, nothing
    /// unsent in the outbox or ready in the pool's queue, and in the dead-letter queue at most
    /// duplicate copies of messages that ran (a publish whose confirm was lost with the
    /// connection goes out again), refused as replays: no poison, tampered or expired message.
    pub async fn assert_nothing_lost_or_doubled(&self) {
        let applies_twice = self.runs_with_repeated_apply().await;
        assert!(
            applies_twice.is_empty(),
            "an apply was claimed twice: {applies_twice:?}"
        );
        let late = self.state_writes_after_fencing().await;
        assert!(
            late.is_empty(),
            "{} state writes accepted after their lease was fenced",
            late.len()
        );
        assert_eq!(self.open_tasks().await, 0, "no task is left open");
        let metrics = crate::http_get(&format!("{}/metrics", self.http_url()))
            .unwrap()
            .1;
        assert!(
            metrics.contains("tofuflow_outbox_unsent 0"),
            "nothing stranded in the outbox"
        );
        assert_eq!(
            self.queue_depth("tofuflow.pool.default").await,
            0,
            "no message stranded in the queue"
        );
        let dead = self.dead_messages().await;
        assert!(
            dead.iter().all(|d| d.reason == "replayed"),
            "the dead-letter queue holds only replayed duplicates: {dead:?}"
        );
    }

    /// A long history for the benchmark, written straight into a SQLite database: `runs`
    /// copies of run `template` (its row and transitions; workspaces `hist/ws-N` of 1,000, one
    /// second apart, newest last), each with `lines` log lines. Plain values only (no state key).
    pub async fn copy_history(&self, template: &str, runs: usize, lines: usize) {
        let mut db = self.database().await;
        let cols: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info('runs')")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        let exprs: Vec<String> = cols
            .iter()
            .map(|c| match c.as_str() {
                "id" => "'hist-' || n".to_string(),
                "workspace" => "'hist/ws-' || (n % 1000)".to_string(),
                "created_ms" | "updated_ms" => format!("{c} - ({runs} - n) * 1000"),
                _ => c.clone(),
            })
            .collect();
        let seq = |name: &str, to: usize| {
            format!("{name}(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM {name} WHERE n < {to})")
        };
        let statements = [
            format!("WITH RECURSIVE {} INSERT INTO runs ({}) SELECT {} FROM runs, seq WHERE runs.id = $1", seq("seq", runs), cols.join(", "), exprs.join(", ")),
            format!("WITH RECURSIVE {} INSERT INTO transitions (run_id, from_state, to_state, actor, reason, at_ms) SELECT 'hist-' || n, from_state, to_state, actor, reason, at_ms FROM transitions, seq WHERE transitions.run_id = $1", seq("seq", runs)),
            format!("WITH RECURSIVE {}, {} INSERT INTO events (task_id, attempt, seq, run_id, phase_order, unix_ms, stream, line) SELECT 'hist-task-' || r.n, 1, l.n, 'hist-' || r.n, 0, 0, 1, 'hist ' || r.n || ' line ' || l.n || ': aws_instance.gpu[3]: Still creating... [1m20s elapsed] ................' FROM r, l WHERE $1 <> ''", seq("r", runs), seq("l", lines)),
        ];
        for sql in statements {
            sqlx::query(&sql)
                .bind(template)
                .execute(&mut db)
                .await
                .unwrap();
        }
    }
}
