//! The agent's own metrics, served at `/metrics` on `--metrics-listen` (OpenMetrics text):
//! tasks by phase and outcome and how long they took here, each step of a task (the sandbox's
//! start, each tofu command), heartbeats and their round trip, running tasks, and the task
//! output read but not yet stored by the coordinator.

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;
use tofuflow_proto::metrics::{histogram, histograms, Histograms, Labels};
use tokio_util::sync::CancellationToken;

pub struct Metrics {
    registry: Registry,
    tasks: Family<Labels, Counter>,
    task_seconds: Histograms,
    step_seconds: Histograms,
    heartbeats: Family<Labels, Counter>,
    heartbeat_seconds: Histogram,
    running: Gauge,
    unsent: Gauge,
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &M
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("tofuflow_agent"),
            tasks: Family::default(),
            task_seconds: histograms(),
            step_seconds: histograms(),
            heartbeats: Family::default(),
            heartbeat_seconds: histogram(),
            running: Gauge::default(),
            unsent: Gauge::default(),
        };
        let mut r = m.registry;
        let s = Unit::Seconds;
        r.register("tasks", "Tasks this agent ran to their end, by phase and outcome (succeeded, failed, cancelled).", m.tasks.clone());
        r.register_with_unit(
            "task",
            "A task on this agent, from its claim to its completion sent, by phase.",
            s.clone(),
            m.task_seconds.clone(),
        );
        r.register_with_unit("step", "A step of a task: delivery (the coordinator's publish → this agent, by the two clocks), claim (the Claim call), setup (the grant → the working directory made: the task's log, watchdog and cgroup), bundle (from the cache or fetched, verified, unpacked), prepare (variables, secrets, state backend, gateway), sandbox (building the task's sandbox on its path), sandbox_ahead (building one ahead, off the path), or tofu_COMMAND (one tofu command, sandbox entry included).", s.clone(), m.step_seconds.clone());
        r.register(
            "heartbeats",
            "Heartbeats sent, by result (ok, failed, timed_out).",
            m.heartbeats.clone(),
        );
        r.register_with_unit(
            "heartbeat",
            "A heartbeat's round trip to the coordinator (answered ones).",
            s,
            m.heartbeat_seconds.clone(),
        );
        r.register(
            "running_tasks",
            "Tasks running on this agent now.",
            m.running.clone(),
        );
        r.register_with_unit("log_unsent", "Task output read from tofu and not yet stored by the coordinator (at most 8 MiB per task: then tofu's output waits).", Unit::Bytes, m.unsent.clone());
        Metrics { registry: r, ..m }
    }

    pub fn task_started(&self) {
        self.running.inc();
    }

    pub fn task_ended(&self, phase: &str, outcome: &str, took: Duration) {
        self.running.dec();
        let phase = phase.to_string();
        self.tasks
            .get_or_create(&vec![
                ("phase", phase.clone()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
        self.task_seconds
            .get_or_create(&vec![("phase", phase)])
            .observe(took.as_secs_f64());
    }

    pub fn step(&self, step: String, took: Duration) {
        self.step_seconds
            .get_or_create(&vec![("step", step)])
            .observe(took.as_secs_f64());
    }

    pub fn heartbeat(&self, result: &str, took: Option<Duration>) {
        self.heartbeats
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
        if let Some(t) = took {
            self.heartbeat_seconds.observe(t.as_secs_f64());
        }
    }

    /// `bytes` more (or, negative, fewer) of a task's output wait to be stored.
    pub fn unsent(&self, bytes: i64) {
        self.unsent.inc_by(bytes);
    }

    fn text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics` on `addr` until `stop` (any other path: 404).
pub async fn serve(addr: SocketAddr, stop: CancellationToken) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for metrics (--metrics-listen): {e}"))?;
    tracing::info!(%addr, "serving /metrics");
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = stop.cancelled() => return,
                c = listener.accept() => c,
            };
            let Ok((stream, _)) = conn else { continue };
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(answer);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(())
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let (status, ctype, body) = if req.uri().path() == "/metrics" {
        let ctype = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        (200, ctype, metrics().text())
    } else {
        (
            404,
            "text/plain",
            "not found: the agent serves /metrics only\n".into(),
        )
    };
    let resp = hyper::Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response");
    Ok(resp)
}
