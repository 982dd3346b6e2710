//! Agent configuration: flags that also read `TOFUFLOW_*` environment variables.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

fn dur(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 30s or 5m: {e}"))
}

fn label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("label {s:?} must look like key=value"))
}

/// tofuflow-agent: takes tasks of its pools from RabbitMQ and runs tofu for them.
#[derive(Parser, Debug, Clone)]
#[command(name = "tofuflow-agent", version)]
pub struct Config {
    /// gRPC URL of the coordinator.
    #[arg(
        long,
        env = "TOFUFLOW_COORDINATOR",
        default_value = "http://127.0.0.1:7700"
    )]
    pub coordinator: String,

    /// Agent token the coordinator expects (its --agent-token).
    #[arg(long, env = "TOFUFLOW_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// RabbitMQ URL.
    #[arg(
        long,
        env = "TOFUFLOW_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Pool(s) to take tasks from (repeat or comma-separate).
    #[arg(
        long = "pool",
        env = "TOFUFLOW_POOLS",
        value_delimiter = ',',
        default_value = "default"
    )]
    pub pools: Vec<String>,

    /// Tasks run at the same time.
    #[arg(long, env = "TOFUFLOW_CONCURRENCY", default_value_t = 1)]
    pub concurrency: u32,

    /// Directory for per-task working directories and the bundle cache.
    #[arg(long, env = "TOFUFLOW_WORK_ROOT", default_value = "tofuflow-work")]
    pub work_root: PathBuf,

    /// The OpenTofu binary (`terraform` works too).
    #[arg(long, env = "TOFUFLOW_TOFU_BIN", default_value = "tofu")]
    pub tofu_bin: String,

    /// Agent name shown in `tofuflow agent list`. Default: the host name.
    #[arg(long, env = "TOFUFLOW_AGENT_NAME")]
    pub name: Option<String>,

    /// Extra labels, key=value (repeatable).
    #[arg(long = "label", value_parser = label)]
    pub labels: Vec<(String, String)>,

    /// Environment variables passed through to tofu (repeatable; a trailing * matches a prefix).
    #[arg(long = "pass-env", env = "TOFUFLOW_PASS_ENV", value_delimiter = ',')]
    pub pass_env: Vec<String>,

    /// How long tofu waits for a state lock another run holds (`-lock-timeout`) before failing.
    #[arg(long, env = "TOFUFLOW_LOCK_TIMEOUT", value_parser = dur, default_value = "5m")]
    pub lock_timeout: Duration,

    /// Longest a task may run; then tofu is interrupted and the task fails as timed out.
    #[arg(long, env = "TOFUFLOW_TASK_TIMEOUT", value_parser = dur, default_value = "12h")]
    pub task_timeout: Duration,

    /// CPU seconds each process of a task may use (RLIMIT_CPU; 0 = no limit).
    #[arg(long, env = "TOFUFLOW_LIMIT_CPU", default_value_t = 0)]
    pub limit_cpu: u64,

    /// Address space per process of a task, in bytes (RLIMIT_AS; 0 = no limit). Go programs
    /// (tofu, providers) reserve large virtual ranges: leave room.
    #[arg(long, env = "TOFUFLOW_LIMIT_MEMORY", default_value_t = 0)]
    pub limit_memory: u64,

    /// Open files per process of a task (RLIMIT_NOFILE; 0 = as inherited).
    #[arg(long, env = "TOFUFLOW_LIMIT_NOFILE", default_value_t = 0)]
    pub limit_nofile: u64,

    /// Largest file a task may write, in bytes (RLIMIT_FSIZE; 0 = no limit).
    #[arg(long, env = "TOFUFLOW_LIMIT_FSIZE", default_value_t = 0)]
    pub limit_fsize: u64,

    /// Processes of the task's user (RLIMIT_NPROC; 0 = no limit; not enforced for root).
    #[arg(long, env = "TOFUFLOW_LIMIT_NPROC", default_value_t = 0)]
    pub limit_nproc: u64,

    /// Time tofu gets after SIGINT before SIGKILL when a task is cancelled.
    #[arg(long, env = "TOFUFLOW_CANCEL_GRACE", value_parser = dur, default_value = "30s")]
    pub cancel_grace: Duration,

    /// On SIGTERM: time running tasks get to finish before they are cancelled.
    #[arg(long, env = "TOFUFLOW_DRAIN_GRACE", value_parser = dur, default_value = "10m")]
    pub drain_grace: Duration,

    /// Keep each task's working directory after it ends (for debugging; says so in the log).
    #[arg(long, env = "TOFUFLOW_KEEP_WORKDIRS")]
    pub keep_workdirs: bool,

    /// Shared provider plugin cache (TF_PLUGIN_CACHE_DIR for every task).
    #[arg(long, env = "TOFUFLOW_PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<PathBuf>,

    /// Write {"agent_id": ID} here once registered and consuming (for scripts and tests).
    #[arg(long, env = "TOFUFLOW_READY_FILE")]
    pub ready_file: Option<PathBuf>,

    /// Log format: text or json. Levels come from TOFUFLOW_LOG (default info).
    #[arg(long, env = "TOFUFLOW_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}
