//! Looking for secrets where they must not be: every process's command line while a run
//! executes, the task messages that went through RabbitMQ (bodies and headers), and
//! everything the coordinator's database holds (SQLite files as bytes; every PostgreSQL row as
//! text). Tests name the canaries; these say where each one was found.

use crate::Cluster;
use sqlx::{Connection, Row};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Where `bytes` contain any of `canaries` (or their hex, as PostgreSQL shows bytea).
pub fn leaks(canaries: &[&str], what: &str, bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    canaries
        .iter()
        .filter(|c| text.contains(*c) || text.contains(&hex::encode(c.as_bytes())))
        .map(|c| format!("{c} in {what}"))
        .collect()
}

/// Reads every process's command line over and over until [`CmdlineScan::stop`].
pub struct CmdlineScan {
    stop: Arc<AtomicBool>,
    found: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<u64>,
}

impl CmdlineScan {
    pub fn start(canaries: &[&str]) -> CmdlineScan {
        let canaries: Vec<String> = canaries.iter().map(|c| c.to_string()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let found: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, f) = (stop.clone(), Arc::clone(&found));
        let thread = std::thread::spawn(move || {
            let c: Vec<&str> = canaries.iter().map(String::as_str).collect();
            let mut scans = 0;
            while !s.load(Ordering::SeqCst) {
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                        let name = format!("/proc/{}/cmdline", e.file_name().to_string_lossy());
                        f.lock().unwrap().extend(leaks(&c, &name, &cmd));
                    }
                }
                scans += 1;
            }
            scans
        });
        CmdlineScan {
            stop,
            found,
            thread,
        }
    }

    /// Stops scanning; what was found and how many scans were made.
    pub fn stop(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let scans = self.thread.join().unwrap();
        let found = self.found.lock().unwrap().clone();
        (found, scans)
    }
}

impl Cluster {
    /// A queue bound to the task exchange that keeps a copy of every task message.
    pub async fn capture_task_messages(&self, queue: &str) -> lapin::Channel {
        let ch = self.amqp().await;
        ch.queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            queue.into(),
            tofuflow_proto::amqp::TASK_EXCHANGE.into(),
            "#".into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
        ch
    }

    /// Every message `queue` got, as bytes (body, then properties and headers).
    pub async fn captured_messages(ch: &lapin::Channel, queue: &str) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            let mut b = m.delivery.data.clone();
            b.extend(format!("{:?}", m.delivery.properties).into_bytes());
            out.push(b);
        }
        out
    }

    /// Everything the coordinator's database holds: the SQLite files' bytes, or every row of
    /// every PostgreSQL table as text (bytea as hex), with the table names.
    pub async fn database_contents(&self) -> Vec<(String, Vec<u8>)> {
        if !self.db_url.starts_with("postgres") {
            return ["coordinator.db", "coordinator.db-wal", "coordinator.db-shm"]
                .iter()
                .filter_map(|f| Some((f.to_string(), std::fs::read(self.dir.join(f)).ok()?)))
                .collect();
        }
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&self.db_url).await.unwrap();
        let tables = sqlx::query("SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_all(&mut db)
            .await
            .unwrap();
        let mut out = Vec::new();
        for t in tables {
            let name: String = t.get("t");
            let rows = sqlx::query(&format!("SELECT CAST(x AS TEXT) AS r FROM \"{name}\" x"))
                .fetch_all(&mut db)
                .await
                .unwrap();
            let text: String = rows.iter().map(|r| r.get::<String, _>("r")).collect();
            out.push((name, text.into_bytes()));
        }
        out
    }

    /// How many rows `table` has.
    pub async fn row_count(&self, table: &str) -> i64 {
        self.rows_where(table, "1 = 1").await
    }

    /// How many rows of `table` meet `condition` (SQL).
    pub async fn rows_where(&self, table: &str, condition: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&self.db_url).await.unwrap();
        sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE {condition}"
        ))
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get::<i64, _>("n")
    }
}
