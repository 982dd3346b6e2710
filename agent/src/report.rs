//! Streams a task's output lines to the coordinator in order, in batches. Lines are buffered
//! while the coordinator is unreachable and sent again until stored: the coordinator absorbs
//! repeats by (task, attempt, sequence), so a retry never duplicates a line. Every line is masked
//! (`crate::mask`) before it is queued: no secret of the task leaves the agent in a log line.

use crate::mask::Masker;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
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
        crate::mask::Registry::global().add(&lease.task_id, &masker);
        let masker = Arc::new(RwLock::new(masker));
        let shared = masker.clone();
        let Lease {
            task_id,
            attempt,
            epoch,
            token,
        } = lease;
        let task_id_of_sink = task_id.clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<v1::Event>();
        let handle = tokio::spawn(async move {
            let mut pending: Vec<v1::Event> = Vec::new();
            // Lines whose end may begin a secret: masked with the lines that follow.
            let mut held: Vec<v1::Event> = Vec::new();
            let mut open = true;
            let mut backoff = Duration::from_millis(100);
            loop {
                if open {
                    let fresh = gather(&mut rx, &mut open).await;
                    let m = masker.read().unwrap_or_else(|p| p.into_inner());
                    let ready = mask_batch(&m, &mut held, fresh, !open);
                    drop(m);
                    pending.extend(ready);
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
                masker: shared,
                task_id: task_id_of_sink,
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

/// What arrives within 100 ms (or until 500 lines); `open` turns false when the sender is gone.
async fn gather(rx: &mut mpsc::UnboundedReceiver<v1::Event>, open: &mut bool) -> Vec<v1::Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut fresh = Vec::new();
    while fresh.len() < 500 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => fresh.push(e),
            Ok(None) => {
                *open = false;
                break;
            }
            Err(_) => break,
        }
    }
    fresh
}

/// Masks `held` and `fresh` lines as one stream (a secret split across lines is masked in
/// every part); returns the lines ready to send, keeping in `held` those whose end may begin a
/// secret (until the next lines, or `last`, or a window with no new line).
fn mask_batch(
    masker: &Masker,
    held: &mut Vec<v1::Event>,
    fresh: Vec<v1::Event>,
    last: bool,
) -> Vec<v1::Event> {
    let flush = last || fresh.is_empty();
    held.extend(fresh);
    let mut lines: Vec<String> = held
        .iter_mut()
        .map(|e| std::mem::take(&mut e.line))
        .collect();
    let keep = masker.mask_stream(&mut lines, flush);
    let mut ready = std::mem::take(held);
    for (e, line) in ready.iter_mut().zip(lines) {
        e.line = line;
    }
    *held = ready.split_off(ready.len() - keep);
    for e in &mut ready {
        truncate(&mut e.line);
    }
    ready
}

/// Cuts a line at 64 KiB (after masking, so no secret is cut in two).
fn truncate(text: &mut String) {
    if text.len() > 64 * 1024 {
        let mut cut = 64 * 1024;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" …[line truncated]");
    }
}

#[derive(Clone)]
pub struct LineSink {
    tx: Option<mpsc::UnboundedSender<v1::Event>>,
    seq: Arc<AtomicU64>,
    masker: Arc<RwLock<Masker>>,
    task_id: String,
}

impl LineSink {
    /// Masks `secrets` too from now on (a renewed token), here and in the agent's own log.
    pub fn add_secrets(&self, secrets: &[String]) {
        if let Ok(mut m) = self.masker.write() {
            m.extend(secrets);
            crate::mask::Registry::global().add(&self.task_id, &m);
        }
    }

    /// Queues one line (masked and cut by the reporter before it leaves the agent).
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
