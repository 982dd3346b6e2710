//! The result a finished task reports: its outcome, the error users read and the limit it hit,
//! decided from what happened. Pure: the runner gathers the facts, this decides.

use super::limits::Effective;
use super::{Done, StopReason};
use crate::error::TaskError;
use crate::sandbox::cgroup::Hits;
use tofuflow_proto::v1;

/// What a task's `CompleteRequest` says about how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub outcome: v1::Outcome,
    pub exit_code: i32,
    /// Empty on success; else why, in the words `run show` prints.
    pub error: String,
    pub has_changes: bool,
    pub summary: Option<v1::ChangeSummary>,
    pub outputs_json: String,
    /// Which limit ended the task ("processes", "timeout", "memory", "cpu", "file-size"), or "".
    pub limit_hit: &'static str,
}

impl Verdict {
    /// Fills `req` (which already names the task, attempt and lease) with this verdict.
    pub fn into_request(self, req: v1::CompleteRequest) -> v1::CompleteRequest {
        v1::CompleteRequest {
            outcome: self.outcome as i32,
            exit_code: self.exit_code,
            error: self.error,
            has_changes: self.has_changes,
            summary: self.summary,
            outputs_json: self.outputs_json,
            limit_hit: self.limit_hit.to_string(),
            ..req
        }
    }

    fn new(outcome: v1::Outcome, exit_code: i32, error: String) -> Verdict {
        Verdict {
            outcome,
            exit_code,
            error,
            has_changes: false,
            summary: None,
            outputs_json: String::new(),
            limit_hit: "",
        }
    }
}

/// Decides how a task ended from: what `execute` returned, why the task was asked to stop (if it
/// was), whether its cancel token fired, what its cgroup recorded, the signal that ended the
/// last tofu command, and the task's limits (named in the error).
pub fn decide(
    result: Result<Done, TaskError>,
    stop: Option<&StopReason>,
    cancel_requested: bool,
    hits: Hits,
    killed_by: Option<&str>,
    lim: &Effective,
) -> Verdict {
    let mut v = match result {
        Ok(d) if d.cancelled => stopped(d.exit_code, stop, lim),
        Ok(d) => Verdict {
            has_changes: d.has_changes,
            summary: Some(d.summary),
            outputs_json: d.outputs_json,
            ..Verdict::new(v1::Outcome::Succeeded, d.exit_code, String::new())
        },
        Err(e) => {
            let outcome = if cancel_requested {
                v1::Outcome::Cancelled
            } else {
                v1::Outcome::Failed
            };
            Verdict::new(outcome, 0, e.to_string())
        }
    };
    // The kernel's OOM killer ended a process: whatever else happened, memory is why.
    let oom = hits.oom_kills > 0 && v.outcome != v1::Outcome::Succeeded;
    if oom {
        v.outcome = v1::Outcome::Failed;
        v.error = format!(
            "killed for memory: the task reached its memory limit ({} bytes, --limit-memory) and the kernel stopped {} of its processes; {}",
            lim.memory, hits.oom_kills, v.error
        );
    }
    // Which limit ended the task, for `run show` and scripts.
    let failed = v.outcome == v1::Outcome::Failed;
    v.limit_hit = match (stop, killed_by) {
        (Some(StopReason::ProcessLimit(_)), _) => "processes",
        (Some(StopReason::Timeout(_)), _) if failed => "timeout",
        _ if oom => "memory",
        (_, Some("SIGXCPU")) if failed => "cpu",
        (_, Some("SIGXFSZ")) if failed => "file-size",
        _ => "",
    };
    v
}

/// tofu was stopped by the agent (exit `code`): a limit fails the task, anything else cancels it.
fn stopped(code: i32, stop: Option<&StopReason>, lim: &Effective) -> Verdict {
    match stop {
        Some(StopReason::ProcessLimit(_)) => Verdict::new(
            v1::Outcome::Failed,
            code,
            format!(
                "stopped at the process limit: the task tried to run more than {} processes (--limit-nproc); tofu was interrupted",
                lim.nproc
            ),
        ),
        // A distinct result: failed, and saying so.
        Some(StopReason::Timeout(_)) => Verdict::new(
            v1::Outcome::Failed,
            code,
            format!(
                "timed out after {} (--task-timeout); tofu was interrupted",
                humantime::format_duration(lim.timeout)
            ),
        ),
        Some(StopReason::UserCancel) => Verdict::new(
            v1::Outcome::Cancelled,
            code,
            "cancelled by user; tofu was interrupted".into(),
        ),
        Some(StopReason::Shutdown) => Verdict::new(
            v1::Outcome::Cancelled,
            code,
            "the agent shut down before the task finished".into(),
        ),
        Some(StopReason::LeaseLost(why)) => {
            Verdict::new(v1::Outcome::Cancelled, code, format!("stopped: {why}"))
        }
        None => Verdict::new(v1::Outcome::Cancelled, code, "cancelled".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lim() -> Effective {
        Effective {
            cpu: 10,
            memory: 1000,
            nproc: 64,
            fsize: 2048,
            timeout: Duration::from_secs(90),
        }
    }

    fn done(code: i32) -> Done {
        Done {
            has_changes: true,
            summary: v1::ChangeSummary {
                add: 1,
                change: 0,
                destroy: 0,
            },
            outputs_json: "{}".into(),
            exit_code: code,
            cancelled: false,
        }
    }

    fn tofu_failed(cmd: &str, signal: Option<&str>) -> Result<Done, TaskError> {
        Err(TaskError::Tofu {
            cmd: cmd.into(),
            exit: -1,
            signal: signal.map(Into::into),
        })
    }

    fn no_hits() -> Hits {
        Hits::default()
    }

    #[test]
    fn success_reports_the_plan_and_no_error() {
        let v = decide(Ok(done(2)), None, false, no_hits(), None, &lim());
        assert_eq!(v.outcome, v1::Outcome::Succeeded);
        assert_eq!((v.exit_code, v.error.as_str(), v.limit_hit), (2, "", ""));
        assert!(v.has_changes);
        assert_eq!(v.summary.map(|s| s.add), Some(1));
        assert_eq!(v.outputs_json, "{}");
    }

    #[test]
    fn stops_that_are_not_limits_cancel_the_task() {
        let lost = StopReason::LeaseLost("the lease expired".into());
        for (stop, error) in [
            (
                Some(&StopReason::UserCancel),
                "cancelled by user; tofu was interrupted",
            ),
            (
                Some(&StopReason::Shutdown),
                "the agent shut down before the task finished",
            ),
            (Some(&lost), "stopped: the lease expired"),
            (None, "cancelled"),
        ] {
            let v = decide(
                Ok(Done::cancelled(130, false)),
                stop,
                true,
                no_hits(),
                None,
                &lim(),
            );
            assert_eq!(v.outcome, v1::Outcome::Cancelled, "{stop:?}");
            assert_eq!(
                (v.exit_code, v.error.as_str(), v.limit_hit),
                (130, error, "")
            );
            assert_eq!(v.summary, None);
        }
    }

    #[test]
    fn a_timeout_fails_the_task_and_says_so() {
        let stop = StopReason::Timeout(Duration::from_secs(90));
        let v = decide(
            Ok(Done::cancelled(130, false)),
            Some(&stop),
            true,
            no_hits(),
            None,
            &lim(),
        );
        assert_eq!(v.outcome, v1::Outcome::Failed);
        assert_eq!(
            v.error,
            "timed out after 1m 30s (--task-timeout); tofu was interrupted"
        );
        assert_eq!(v.limit_hit, "timeout");
    }

    #[test]
    fn the_process_limit_fails_the_task() {
        let stop = StopReason::ProcessLimit(64);
        let v = decide(
            Ok(Done::cancelled(130, false)),
            Some(&stop),
            true,
            no_hits(),
            None,
            &lim(),
        );
        assert_eq!(v.outcome, v1::Outcome::Failed);
        assert!(
            v.error.starts_with(
                "stopped at the process limit: the task tried to run more than 64 processes"
            ),
            "{}",
            v.error
        );
        assert_eq!(v.limit_hit, "processes");
    }

    #[test]
    fn an_oom_kill_fails_the_task_for_memory() {
        let hits = Hits {
            oom_kills: 2,
            pids_max: 0,
        };
        let v = decide(
            tofu_failed("apply", Some("SIGKILL")),
            None,
            false,
            hits,
            Some("SIGKILL"),
            &lim(),
        );
        assert_eq!(v.outcome, v1::Outcome::Failed);
        assert!(
            v.error.starts_with("killed for memory: the task reached its memory limit (1000 bytes, --limit-memory) and the kernel stopped 2 of its processes; tofu apply failed (exit -1, "),
            "{}",
            v.error
        );
        assert_eq!(v.limit_hit, "memory");
        // Even a task stopped for another reason failed for memory when the kernel killed it.
        let v = decide(
            Ok(Done::cancelled(137, false)),
            Some(&StopReason::UserCancel),
            true,
            hits,
            None,
            &lim(),
        );
        assert_eq!((v.outcome, v.limit_hit), (v1::Outcome::Failed, "memory"));
        // A task that succeeded despite an OOM kill of some helper did succeed.
        let v = decide(Ok(done(0)), None, false, hits, None, &lim());
        assert_eq!((v.outcome, v.limit_hit), (v1::Outcome::Succeeded, ""));
    }

    #[test]
    fn rlimit_signals_name_the_limit() {
        let v = decide(
            tofu_failed("plan", Some("SIGXCPU")),
            None,
            false,
            no_hits(),
            Some("SIGXCPU"),
            &lim(),
        );
        assert_eq!(v.outcome, v1::Outcome::Failed);
        assert_eq!(v.error, "tofu plan failed (exit -1, killed for CPU time: the task's CPU time limit was reached): see the run's log");
        assert_eq!(v.limit_hit, "cpu");
        let v = decide(
            tofu_failed("apply", Some("SIGXFSZ")),
            None,
            false,
            no_hits(),
            Some("SIGXFSZ"),
            &lim(),
        );
        assert_eq!(v.outcome, v1::Outcome::Failed);
        assert_eq!(v.limit_hit, "file-size");
    }

    #[test]
    fn a_plain_failure_fails_without_a_limit() {
        let e = Err(TaskError::Tofu {
            cmd: "init".into(),
            exit: 1,
            signal: None,
        });
        let v = decide(e, None, false, no_hits(), None, &lim());
        assert_eq!(v.outcome, v1::Outcome::Failed);
        assert_eq!(v.error, "tofu init failed (exit 1): see the run's log");
        assert_eq!((v.exit_code, v.limit_hit), (0, ""));
        // The same error while the task was being stopped counts as cancelled.
        let e = Err(TaskError::Launch("waiting for tofu failed: gone".into()));
        let v = decide(
            e,
            Some(&StopReason::UserCancel),
            true,
            no_hits(),
            None,
            &lim(),
        );
        assert_eq!(v.outcome, v1::Outcome::Cancelled);
        assert_eq!(v.error, "waiting for tofu failed: gone");
    }
}
