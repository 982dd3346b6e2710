//! Several coordinators behind one gRPC client: calls go to one of them (the current one) until
//! a call fails at the transport level (connection refused, reset, timed out), then to the next.
//!
//! Any coordinator can serve any call: registrations, leases (with their fencing epochs) and
//! blobs live in the shared database, so moving to another coordinator changes nothing the
//! agent holds. The call that failed is not replayed here (its body may be a stream): it fails
//! with `Unavailable`, and its caller retries as it does for one coordinator (registration,
//! heartbeats, event reports and the final report retry; a claim nacks the message back onto
//! the queue; blob transfers retry in `runner::blobs`), now against the next coordinator.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::transport::Channel;

/// One gRPC channel per coordinator URL and which one calls go to.
#[derive(Clone)]
pub struct Failover {
    channels: Arc<[(String, Channel)]>,
    current: Arc<AtomicUsize>,
}

impl Failover {
    /// Calls go to the first of `channels` (URL, channel) until it fails. Panics when empty
    /// (the configuration always names at least one coordinator).
    pub fn new(channels: Vec<(String, Channel)>) -> Failover {
        assert!(!channels.is_empty(), "at least one coordinator");
        Failover {
            channels: channels.into(),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The URL calls go to now.
    pub fn current_url(&self) -> &str {
        &self.channels[self.current.load(Ordering::SeqCst) % self.channels.len()].0
    }

    /// How many coordinators there are.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Always false: there is at least one coordinator.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The next coordinator after `failed`, round the list.
pub fn next(failed: usize, n: usize) -> usize {
    (failed + 1) % n
}

/// Moves `current` on from `failed` unless a concurrent failure already did (so N calls that
/// fail together on one dead coordinator skip it once, not N times).
fn move_on(current: &AtomicUsize, failed: usize, n: usize) -> bool {
    current
        .compare_exchange(failed, next(failed, n), Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

type CallFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, tonic::transport::Error>> + Send>>;

impl Service<Request<Body>> for Failover {
    type Response = Response<Body>;
    type Error = tonic::transport::Error;
    type Future = CallFuture;

    // Readiness is awaited per call, on the channel the call goes to.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let n = self.channels.len();
        let i = self.current.load(Ordering::SeqCst) % n;
        let (url, mut ch) = self.channels[i].clone();
        let current = self.current.clone();
        let next_url = self.channels[next(i, n)].0.clone();
        Box::pin(async move {
            let res = match std::future::poll_fn(|cx| ch.poll_ready(cx)).await {
                Ok(()) => ch.call(req).await,
                Err(e) => Err(e),
            };
            if let Err(e) = &res {
                if n > 1 && move_on(&current, i, n) {
                    tracing::warn!(coordinator = %url, next = %next_url, error = %e, "coordinator unreachable: moving to the next one");
                }
            }
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_moves_on_once_and_wraps_round() {
        let c = AtomicUsize::new(0);
        assert!(move_on(&c, 0, 3));
        // A second call that failed on coordinator 0 does not skip coordinator 1 too.
        assert!(!move_on(&c, 0, 3));
        assert_eq!(c.load(Ordering::SeqCst), 1);
        assert!(move_on(&c, 1, 3));
        assert!(move_on(&c, 2, 3));
        assert_eq!(c.load(Ordering::SeqCst), 0);
    }
}
