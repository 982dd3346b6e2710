//! What the coordinator measures as it happens: histograms the lifecycle records (submit →
//! start, queue wait, a claim, a task from claim to completion, a workflow step), kept in one
//! registry for the process and encoded by `/metrics` (`http/metrics.rs`) with the figures it
//! reads at scrape time.

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::LazyLock;
use std::time::Duration;
use tofuflow_proto::metrics::{histogram, histograms, Histograms};

/// The process's recorded metrics.
pub struct Recorded {
    pub registry: Registry,
    submit_to_start: Histograms,
    queue_wait: Histograms,
    claim: Histogram,
    task: Histograms,
    workflow_step: Histogram,
    submit_group: Histogram,
    log_group: Histogram,
    heartbeat_group: Histogram,
    claim_group: Histogram,
    dispatch: Histograms,
}

/// Buckets for how many calls one group commit held.
fn group_sizes() -> Histogram {
    Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
}

/// The one registry of this process.
pub fn recorded() -> &'static Recorded {
    static R: LazyLock<Recorded> = LazyLock::new(Recorded::new);
    &R
}

impl Recorded {
    fn new() -> Recorded {
        let r = Recorded {
            registry: Registry::with_prefix("tofuflow"),
            submit_to_start: histograms(),
            queue_wait: histograms(),
            claim: histogram(),
            task: histograms(),
            workflow_step: histogram(),
            submit_group: group_sizes(),
            log_group: group_sizes(),
            heartbeat_group: group_sizes(),
            claim_group: group_sizes(),
            dispatch: histograms(),
        };
        let mut reg = r.registry;
        let s = Unit::Seconds;
        reg.register_with_unit("submit_to_start", "A run's submit to its plan's first claim by an agent (origin: user, or workflow: a workflow's run, created in its upstream's ending transaction, so this is the DAG hop to the claim).", s.clone(), r.submit_to_start.clone());
        reg.register_with_unit("queue_wait", "A task's time queued (the run queued, or approved for an apply) until an agent claimed it, by phase.", s.clone(), r.queue_wait.clone());
        reg.register_with_unit(
            "claim",
            "Time the coordinator took to grant a claim (its transaction included).",
            s.clone(),
            r.claim.clone(),
        );
        reg.register_with_unit(
            "task",
            "A task attempt from its claim to its completion, by phase and outcome.",
            s.clone(),
            r.task.clone(),
        );
        reg.register_with_unit("workflow_step", "Time the workflow engine took to move a workflow run on after one of its runs ended (in that run's transaction).", s, r.workflow_step.clone());
        for (name, what, h) in [
            ("submit_group", "Submits", &r.submit_group),
            ("claim_group", "Claims", &r.claim_group),
            ("log_group", "Agents' log batches", &r.log_group),
            (
                "heartbeat_group",
                "Heartbeats holding leases",
                &r.heartbeat_group,
            ),
        ] {
            let help = format!("{what} committed together in one transaction (the group commit).");
            reg.register(name, help, h.clone());
        }
        reg.register_with_unit("dispatch", "The coordinator's steps of a task's way to an agent: submit (a SubmitRun call, its group commit included), outbox (the publisher woken → the task message handed to RabbitMQ), confirm (handed over → the broker's confirm).", Unit::Seconds, r.dispatch.clone());
        Recorded { registry: reg, ..r }
    }

    /// A granted claim: how long it took, and how long its task waited for it.
    pub fn claimed(
        &self,
        took: Duration,
        phase: &str,
        waited_ms: i64,
        submit_ms: Option<(i64, bool)>,
    ) {
        self.claim.observe(took.as_secs_f64());
        self.queue_wait
            .get_or_create(&vec![("phase", phase.to_string())])
            .observe(seconds(waited_ms));
        if let Some((ms, workflow)) = submit_ms {
            let origin = if workflow { "workflow" } else { "user" };
            self.submit_to_start
                .get_or_create(&vec![("origin", origin.to_string())])
                .observe(seconds(ms));
        }
    }

    /// A task attempt completed after `ms` since its claim.
    pub fn task_ended(&self, phase: &str, outcome: &str, ms: i64) {
        let labels = vec![
            ("phase", phase.to_string()),
            ("outcome", outcome.to_string()),
        ];
        self.task.get_or_create(&labels).observe(seconds(ms));
    }

    /// A committed group: how many submits, claims, log batches and heartbeats it held (each
    /// observed when any).
    pub fn group(&self, [submits, claims, logs, heartbeats]: [usize; 4]) {
        for (n, h) in [
            (submits, &self.submit_group),
            (claims, &self.claim_group),
            (logs, &self.log_group),
            (heartbeats, &self.heartbeat_group),
        ] {
            if n > 0 {
                h.observe(n as f64);
            }
        }
    }

    /// One of the coordinator's dispatch steps (`submit`, `outbox`, `confirm`) took `took`.
    pub fn dispatch(&self, step: &'static str, took: Duration) {
        self.dispatch
            .get_or_create(&vec![("step", step.to_string())])
            .observe(took.as_secs_f64());
    }

    /// One step of the workflow engine.
    pub fn workflow_step(&self, took: Duration) {
        self.workflow_step.observe(took.as_secs_f64());
    }
}

fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}
