//! Streams a task's output lines to the coordinator in order, in batches. Lines are buffered
//! while the coordinator is unreachable and sent again until stored: the coordinator absorbs
//! repeats by (task, attempt, sequence), so a retry never duplicates a line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tofuflow_proto::v1;
use tokio::sync::mpsc;

pub struct Reporter {
    tx: Option<mpsc::UnboundedSender<v1::Event>>,
    seq: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<bool>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

impl Reporter {
    pub fn start(client: crate::Client, task_id: String, attempt: u32, epoch: u64) -> Reporter {
        let (tx, mut rx) = mpsc::unbounded_channel::<v1::Event>();
        let handle = tokio::spawn(async move {
            let mut pending: Vec<v1::Event> = Vec::new();
            let mut open = true;
            let mut backoff = Duration::from_millis(100);
            loop {
                if open {
                    // Gather what arrives within 100 ms (or until 500 lines).
                    let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
                    while pending.len() < 500 {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(e)) => pending.push(e),
                            Ok(None) => {
                                open = false;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
                if pending.is_empty() {
                    if !open {
                        return true;
                    }
                    continue;
                }
                let batch = v1::EventBatch {
                    task_id: task_id.clone(),
                    attempt,
                    epoch,
                    events: pending.clone(),
                };
                let mut c = client.clone();
                match c.report_events(tokio_stream::iter(vec![batch])).await {
                    Ok(_) => {
                        pending.clear();
                        backoff = Duration::from_millis(100);
                    }
                    Err(s)
                        if s.code() == tonic::Code::FailedPrecondition
                            || s.code() == tonic::Code::NotFound =>
                    {
                        tracing::warn!(%task_id, attempt, error = %s.message(), "coordinator refuses this attempt's events; dropping them");
                        return false;
                    }
                    Err(s) => {
                        tracing::debug!(%task_id, error = %s.message(), retry_ms = backoff.as_millis() as u64, "event report failed; will retry");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        Reporter {
            tx: Some(tx),
            seq: Arc::new(AtomicU64::new(0)),
            handle,
        }
    }

    /// Queues one line.
    pub fn line(&self, stream: v1::LogStream, text: impl Into<String>) {
        let mut text: String = text.into();
        if text.len() > 64 * 1024 {
            text.truncate(64 * 1024);
            text.push_str(" …[line truncated]");
        }
        let e = v1::Event {
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            unix_ms: now_ms(),
            stream: stream as i32,
            line: text,
        };
        if let Some(tx) = &self.tx {
            let _ = tx.send(e);
        }
    }

    pub fn system(&self, text: impl Into<String>) {
        self.line(v1::LogStream::System, text);
    }

    /// A sender usable from other tasks (the process output readers).
    pub fn handle(&self) -> LineSink {
        LineSink {
            tx: self.tx.clone(),
            seq: self.seq.clone(),
        }
    }

    /// Sends everything still buffered; true when all lines were stored.
    pub async fn finish(mut self, within: Duration) -> bool {
        self.tx.take();
        matches!(
            tokio::time::timeout(within, &mut self.handle).await,
            Ok(Ok(true))
        )
    }
}

#[derive(Clone)]
pub struct LineSink {
    tx: Option<mpsc::UnboundedSender<v1::Event>>,
    seq: Arc<AtomicU64>,
}

impl LineSink {
    pub fn line(&self, stream: v1::LogStream, text: String) {
        let e = v1::Event {
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            unix_ms: now_ms(),
            stream: stream as i32,
            line: text,
        };
        if let Some(tx) = &self.tx {
            let _ = tx.send(e);
        }
    }
}
