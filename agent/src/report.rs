//! Streams a task's output lines to the coordinator in order, in batches. Lines are buffered
//! while the coordinator is unreachable and sent again until stored: the coordinator absorbs
//! repeats by (task, attempt, sequence), so a retry never duplicates a line. Every line is masked
//! (`crate::mask`) before it is queued: no secret of the task leaves the agent in a log line.
//!
//! Memory is bounded: tofu's output is read only while less than [`UNSENT_BYTES`] of it waits to
//! be stored (`LineSink::stream_line` waits otherwise, so tofu waits on its pipe), and a request
//! carries at most [`BATCH_LINES`] lines and about [`BATCH_BYTES`].

use crate::mask::Masker;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tofuflow_proto::v1;
use tokio::sync::{mpsc, Semaphore};

/// Output of one task read but not yet stored by the coordinator, at most.
pub const UNSENT_BYTES: usize = 8 << 20;
/// Lines in one report, at most.
const BATCH_LINES: usize = 500;
/// Bytes in one report, about (a batch ends after the line that passes it).
const BATCH_BYTES: usize = 1 << 20;

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

/// A line on its way to the reporter, with the bytes of the budget it holds.
struct Queued {
    event: v1::Event,
    charge: u32,
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
        let budget = Arc::new(Semaphore::new(UNSENT_BYTES));
        let (tx, rx) = mpsc::unbounded_channel::<Queued>();
        let sink = LineSink {
            tx: Some(tx),
            seq: Arc::new(AtomicU64::new(0)),
            masker: masker.clone(),
            budget: budget.clone(),
            task_id: lease.task_id.clone(),
        };
        let stream = Stream {
            client,
            lease,
            masker,
            budget,
            rx,
            held: Vec::new(),
            pending: Vec::new(),
            charges: VecDeque::new(),
            open: true,
        };
        Reporter {
            sink,
            handle: tokio::spawn(stream.run()),
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

/// The reporter's loop and what it holds: lines held for masking across lines, lines masked and
/// not yet stored, and the budget each received line holds until it is stored.
struct Stream {
    client: crate::Client,
    lease: Lease,
    masker: Arc<RwLock<Masker>>,
    budget: Arc<Semaphore>,
    rx: mpsc::UnboundedReceiver<Queued>,
    held: Vec<v1::Event>,
    pending: Vec<v1::Event>,
    /// Of every line received and not yet stored (held or pending), oldest first.
    charges: VecDeque<u32>,
    open: bool,
}

/// What sending one batch came to.
enum Sent {
    Stored,
    Refused,
    Failed,
}

impl Stream {
    /// Until every line is stored (true), or the coordinator refuses this attempt's lines.
    async fn run(mut self) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.open {
                self.take_lines().await;
            }
            if self.pending.is_empty() {
                if !self.open {
                    return true;
                }
                continue;
            }
            let n = batch_len(&self.pending);
            match self.send(n).await {
                Sent::Stored => {
                    self.pending.drain(..n);
                    let freed: u64 = self.charges.drain(..n).map(u64::from).sum();
                    self.budget.add_permits(freed as usize);
                    crate::metrics::metrics().unsent(-(freed as i64));
                    backoff = Duration::from_millis(100);
                }
                Sent::Refused => {
                    // Nobody will free the budget again: let the output readers go on.
                    self.budget.close();
                    let dropped: u64 = self.charges.iter().map(|c| u64::from(*c)).sum();
                    crate::metrics::metrics().unsent(-(dropped as i64));
                    return false;
                }
                Sent::Failed => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Receives what has arrived (waiting up to 100 ms when nothing is waiting to be sent) and
    /// masks it into `pending`.
    async fn take_lines(&mut self) {
        let wait = if self.pending.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        let fresh = gather(&mut self.rx, &mut self.open, wait).await;
        // Held lines go out when the stream ends or after a quiet window, not merely because
        // this round did not wait.
        let flush = !self.open || (fresh.is_empty() && !wait.is_zero());
        let fresh: Vec<v1::Event> = fresh
            .into_iter()
            .map(|q| {
                self.charges.push_back(q.charge);
                q.event
            })
            .collect();
        let m = self.masker.read().unwrap_or_else(|p| p.into_inner());
        let ready = mask_batch(&m, &mut self.held, fresh, flush);
        drop(m);
        self.pending.extend(ready);
    }

    /// Sends the first `n` pending lines.
    async fn send(&self, n: usize) -> Sent {
        let l = &self.lease;
        let batch = v1::EventBatch {
            task_id: l.task_id.clone(),
            attempt: l.attempt,
            epoch: l.epoch,
            events: self.pending[..n].to_vec(),
            lease_token: l.token.clone(),
        };
        let mut c = self.client.clone();
        match c.report_events(tokio_stream::iter(vec![batch])).await {
            Ok(_) => Sent::Stored,
            Err(s)
                if s.code() == tonic::Code::FailedPrecondition
                    || s.code() == tonic::Code::NotFound =>
            {
                tracing::warn!(task_id = %l.task_id, attempt = l.attempt, error = %s.message(), "coordinator refuses this attempt's events; dropping them");
                Sent::Refused
            }
            Err(s) => {
                tracing::debug!(task_id = %l.task_id, error = %s.message(), "event report failed; will retry");
                Sent::Failed
            }
        }
    }
}

/// How many of the first lines go in one batch: at most [`BATCH_LINES`], ending after the line
/// that reaches [`BATCH_BYTES`] (always at least one).
fn batch_len(lines: &[v1::Event]) -> usize {
    let mut bytes = 0;
    for (i, e) in lines.iter().take(BATCH_LINES).enumerate() {
        bytes += e.line.len();
        if bytes >= BATCH_BYTES {
            return i + 1;
        }
    }
    lines.len().min(BATCH_LINES)
}

/// What arrives within `wait` (or until [`BATCH_LINES`] lines); `open` turns false when every
/// sender is gone.
async fn gather(
    rx: &mut mpsc::UnboundedReceiver<Queued>,
    open: &mut bool,
    wait: Duration,
) -> Vec<Queued> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut fresh = Vec::new();
    while fresh.len() < BATCH_LINES {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(q)) => fresh.push(q),
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
/// secret (until the next lines, or `flush`: the last lines, or a window with no new line).
fn mask_batch(
    masker: &Masker,
    held: &mut Vec<v1::Event>,
    fresh: Vec<v1::Event>,
    flush: bool,
) -> Vec<v1::Event> {
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
    tx: Option<mpsc::UnboundedSender<Queued>>,
    seq: Arc<AtomicU64>,
    masker: Arc<RwLock<Masker>>,
    budget: Arc<Semaphore>,
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

    /// Queues one line (masked and cut by the reporter before it leaves the agent): the
    /// agent's own few lines, which never wait.
    pub fn line(&self, stream: v1::LogStream, text: String) {
        self.queue(stream, text, 0);
    }

    /// Queues one line of a command's output once the task's unsent output leaves room for it
    /// (waiting otherwise: the caller stops reading, so the command waits on its pipe).
    pub async fn stream_line(&self, stream: v1::LogStream, text: String) {
        let want = text.len().clamp(1, UNSENT_BYTES) as u32;
        let charge = match self.budget.acquire_many(want).await {
            Ok(permit) => {
                permit.forget();
                crate::metrics::metrics().unsent(want.into());
                want
            }
            // The reporter has stopped: nothing waits for room any more.
            Err(_) => 0,
        };
        self.queue(stream, text, charge);
    }

    fn queue(&self, stream: v1::LogStream, text: String, charge: u32) {
        let event = v1::Event {
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            unix_ms: now_ms(),
            stream: stream as i32,
            line: text,
        };
        if let Some(tx) = &self.tx {
            let _ = tx.send(Queued { event, charge });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(sizes: &[usize]) -> Vec<v1::Event> {
        sizes
            .iter()
            .map(|n| v1::Event {
                line: "x".repeat(*n),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn a_batch_holds_at_most_500_lines_and_ends_after_the_line_passing_1_mib() {
        assert_eq!(batch_len(&lines(&[10; 1200])), 500);
        assert_eq!(batch_len(&lines(&[10; 3])), 3);
        assert_eq!(batch_len(&lines(&[400 << 10, 400 << 10, 400 << 10, 1])), 3);
        assert_eq!(
            batch_len(&lines(&[2 << 20, 1])),
            1,
            "one big line still goes"
        );
    }
}
