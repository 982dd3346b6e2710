//! A task's limits: what the run asked for, capped by the agent's own maxima.

use crate::config::Config;
use std::time::Duration;
use tofuflow_proto::v1;

/// A task's limits: what the run asked for, capped by the agent's own (0 = none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Effective {
    pub cpu: u64,
    pub memory: u64,
    pub nproc: u64,
    pub fsize: u64,
    pub timeout: Duration,
}

/// The stricter of the agent's maximum and the run's request (0 = unset).
fn cap(agent: u64, run: u64) -> u64 {
    match (agent, run) {
        (0, r) => r,
        (a, 0) => a,
        (a, r) => a.min(r),
    }
}

impl Effective {
    /// The run's requested limits within the agent's maxima.
    pub fn of(cfg: &Config, run: v1::TaskLimits) -> Effective {
        Effective {
            cpu: cap(cfg.limit_cpu, run.cpu_secs),
            memory: cap(cfg.limit_memory, run.memory_bytes),
            nproc: cap(cfg.limit_nproc, run.nproc),
            fsize: cap(cfg.limit_fsize, run.fsize_bytes),
            timeout: Duration::from_secs(cap(cfg.task_timeout.as_secs().max(1), run.timeout_secs)),
        }
    }

    /// The limits in words, for the run's log.
    pub fn describe(&self) -> String {
        let n = |v: u64| {
            if v == 0 {
                "none".to_string()
            } else {
                v.to_string()
            }
        };
        format!(
            "cpu {} s, memory {} bytes, processes {}, file size {} bytes, timeout {}",
            n(self.cpu),
            n(self.memory),
            n(self.nproc),
            n(self.fsize),
            humantime::format_duration(self.timeout)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_gets_its_limits_within_the_agents_maxima() {
        use clap::Parser;
        let cfg = Config::parse_from([
            "tofuflow-agent",
            "--limit-memory",
            "1000",
            "--task-timeout",
            "1h",
        ]);
        let asked = v1::TaskLimits {
            memory_bytes: 5000,
            nproc: 64,
            timeout_secs: 60,
            ..Default::default()
        };
        let e = Effective::of(&cfg, asked);
        assert_eq!(e.memory, 1000, "capped by the agent");
        assert_eq!(e.nproc, 64, "the agent sets none: the run's");
        assert_eq!(e.cpu, 0);
        assert_eq!(
            e.timeout,
            Duration::from_secs(60),
            "stricter than the agent's"
        );
        let e = Effective::of(&cfg, v1::TaskLimits::default());
        assert_eq!((e.memory, e.timeout), (1000, Duration::from_secs(3600)));
    }
}
