//! Streams a task's output lines to the coordinator in order, in batches. Lines are buffered
//! while the coordinator is unreachable and sent again until stored: the coordinator absorbs
//! repeats by (task, attempt, sequence), so a retry never duplicates a line. Every line is masked
//! (`crate::mask`) before it is queued: no secret of the task leaves the agent in a log line.

use crate::mask::Masker;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tofuflow_proto::v1;
use tokio::sync::mpsc;

pub struct Reporter {
    sink: LineSink,
    handle: tokio::task::JoinHandle<bool>,
}

/// Which task and lease the lines belong to.
pub struct Lease {
    pub task_id: String,
    pub attempt: u32,
    pub epoch: u64,
    pub token: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

impl Reporter {
    pub fn start(client: crate::Client, lease: Lease, masker: Masker) -> Reporter {
        let Lease {
            task_id,
            attempt,
            epoch,
            token,
        } = lease;
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
                    lease_token: token.clone(),
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
            sink: LineSink {
                tx: Some(tx),
                seq: Arc::new(AtomicU64::new(0)),
                masker: Arc::new(masker),
            },
            handle,
        }
    }

    /// Queues one line.
    pub fn line(&self, stream: v1::LogStream, text: impl Into<String>) {
        self.sink.line(stream, text.into());
    }

    pub fn system(&self, text: impl Into<String>) {
        self.line(v1::LogStream::System, text);
    }

    /// A sender usable from other tasks (the process output readers).
    pub fn handle(&self) -> LineSink {
        self.sink.clone()
    }

    /// Sends everything still buffered; true when all lines were stored.
    pub async fn finish(mut self, within: Duration) -> bool {
        self.sink.tx.take();
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
    masker: Arc<Masker>,
}

impl LineSink {
    /// Queues one line, masked, and cut at 64 KiB (after masking, so no secret is cut in two).
    pub fn line(&self, stream: v1::LogStream, text: String) {
        let mut text = self.masker.mask(text);
        if text.len() > 64 * 1024 {
            let mut cut = 64 * 1024;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
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
}
