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

fn pool_network(s: &str) -> Result<(String, crate::sandbox::Network), String> {
    use clap::ValueEnum;
    let (p, m) = s
        .split_once('=')
        .ok_or_else(|| format!("--pool-network {s:?} must look like POOL=MODE"))?;
    let mode = crate::sandbox::Network::from_str(m.trim(), true).map_err(|_| {
        format!("--pool-network {s:?}: mode must be egress, host, none or allow-list")
    })?;
    Ok((p.trim().to_string(), mode))
}

/// tofuflow-agent: takes tasks of its pools from RabbitMQ and runs tofu for them.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "tofuflow-agent",
    version,
    after_help = "Subcommand: `tofuflow-agent check [FLAGS]` prints the isolation this host gives tasks under FLAGS, and exits 1 when the configuration asks for more than the host has."
)]
pub struct Config {
    /// gRPC URL of the coordinator: http://HOST:PORT, or https://HOST:PORT when it serves TLS.
    /// Several coordinators (on one PostgreSQL): comma-separate them or repeat the flag; calls
    /// go to the first until it cannot be reached, then to the next, round the list.
    #[arg(
        long,
        env = "TOFUFLOW_COORDINATOR",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7700"
    )]
    pub coordinator: Vec<String>,

    /// What the agent joins with: a join token (`tofuflow agent join-token create`) or a static
    /// agent token of the coordinator's. Once joined, its own identity is kept in the work root.
    #[arg(long, env = "TOFUFLOW_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// CA certificate (PEM) that signed the coordinator's certificate, for an https://
    /// --coordinator and the state backend behind it. Default: the system roots.
    #[arg(long, env = "TOFUFLOW_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS, signed by the coordinator's --tls-client-ca.
    /// Needs --tls-key.
    #[arg(long, env = "TOFUFLOW_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = "TOFUFLOW_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// RabbitMQ URL. Several nodes of one cluster: comma-separate them or repeat the flag; the
    /// agent connects to the first that answers and, when that connection is lost, to the
    /// next live one.
    #[arg(
        long,
        env = "TOFUFLOW_AMQP_URL",
        value_delimiter = ',',
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: Vec<String>,

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

    /// Memory of a task in bytes (0 = no limit): for all its processes together when the host
    /// has a memory cgroup (the kernel's OOM killer stops it there, and the run says so), else
    /// address space per process (RLIMIT_AS; Go programs reserve large virtual ranges: leave room).
    #[arg(long, env = "TOFUFLOW_LIMIT_MEMORY", default_value_t = 0)]
    pub limit_memory: u64,

    /// Open files per process of a task (RLIMIT_NOFILE; 0 = as inherited).
    #[arg(long, env = "TOFUFLOW_LIMIT_NOFILE", default_value_t = 0)]
    pub limit_nofile: u64,

    /// Largest file a task may write, in bytes (RLIMIT_FSIZE; 0 = no limit).
    #[arg(long, env = "TOFUFLOW_LIMIT_FSIZE", default_value_t = 0)]
    pub limit_fsize: u64,

    /// Processes of a task (0 = no limit): a pids cgroup for the whole task when the host has
    /// one (reaching it stops the task), and RLIMIT_NPROC for its run user (not enforced for root).
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

    /// Serve the agent's metrics at http://ADDR/metrics (OpenMetrics text; e.g. 0.0.0.0:7702).
    /// Unauthenticated, like the coordinator's: bind it where only the scraper reaches it.
    #[arg(long, env = "TOFUFLOW_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Write {"agent_id": ID} here once registered and consuming (for scripts and tests).
    #[arg(long, env = "TOFUFLOW_READY_FILE")]
    pub ready_file: Option<PathBuf>,

    /// Task isolation: `auto` uses namespaces when the host allows them, `required` refuses to
    /// start without them, `off` keeps process isolation only. See `tofuflow-agent check`.
    #[arg(long, env = "TOFUFLOW_SANDBOX", value_enum, default_value = "auto")]
    pub sandbox: crate::sandbox::Mode,

    /// With namespaces: while a slot waits for its next task, build that task's sandbox (a
    /// fresh one, used by that task alone), so the task's first tofu command does not wait for
    /// it. An idle slot then holds one sandbox (two small processes and a 16 MiB tmpfs, empty).
    #[arg(long, env = "TOFUFLOW_SANDBOX_AHEAD", value_parser = clap::builder::BoolishValueParser::new(), default_value = "true", action = clap::ArgAction::Set)]
    pub sandbox_ahead: bool,

    /// Network of tasks: egress (anywhere through the agent's proxy, except the agent host's
    /// own, loopback and link-local addresses), host (the host's network: tasks reach its
    /// loopback services too), none (loopback and the state backend only) or allow-list (only
    /// --allow-host destinations, through the proxy). Default: egress when the host gives tasks
    /// a network namespace, else host (with a warning). egress, none and allow-list set
    /// explicitly need a network namespace: the agent refuses to start without one.
    #[arg(long, env = "TOFUFLOW_NETWORK", value_enum)]
    pub network: Option<crate::sandbox::Network>,

    /// Network mode of one pool, overriding --network (POOL=MODE, repeatable).
    #[arg(long = "pool-network", env = "TOFUFLOW_POOL_NETWORK", value_delimiter = ',', value_parser = pool_network)]
    pub pool_network: Vec<(String, crate::sandbox::Network)>,

    /// Destinations allow-list tasks may reach: HOST, HOST:PORT, *.DOMAIN or *.DOMAIN:PORT
    /// (repeatable or comma-separated). The state backend is always allowed.
    #[arg(
        long = "allow-host",
        env = "TOFUFLOW_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,

    /// The user tasks run as: `auto` (when the agent runs as root: UID/GID 64000+slot, else the
    /// agent's user), `agent` (the agent's own user), or UID[:GID] / a user name.
    #[arg(long, env = "TOFUFLOW_RUN_USER", default_value = "auto")]
    pub run_user: String,

    /// First UID/GID of `--run-user auto` (slot N runs as base+N). Give each agent on a host
    /// its own range, so tasks of different agents never share a user.
    #[arg(long, env = "TOFUFLOW_RUN_UID_BASE", default_value_t = 64000)]
    pub run_uid_base: u32,

    /// Extra host path visible in the sandbox: SRC[:DST][:ro|rw] (repeatable; read-only by
    /// default).
    #[arg(long = "sandbox-bind", value_parser = crate::sandbox::parse_bind)]
    pub sandbox_binds: Vec<crate::sandbox::ExtraBind>,

    /// Log format: text or json. Levels come from TOFUFLOW_LOG (default info).
    #[arg(long, env = "TOFUFLOW_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl Config {
    /// The network mode set for tasks from `pool` (`--pool-network`, else `--network`), if one
    /// was; the effective one is [`crate::sandbox::Sandbox::network_for`].
    pub fn network_setting(&self, pool: &str) -> Option<crate::sandbox::Network> {
        self.pool_network
            .iter()
            .rev()
            .find(|(p, _)| p == pool)
            .map(|(_, m)| *m)
            .or(self.network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinators_and_amqp_nodes_are_lists_comma_separated_or_repeated() {
        let c = Config::try_parse_from([
            "tofuflow-agent",
            "--coordinator",
            "http://a:7700,http://b:7700",
            "--coordinator",
            "http://c:7700",
            "--amqp-url",
            "amqp://u:p@r1:5672/%2f,amqp://u:p@r2:5672/%2f",
        ])
        .unwrap();
        assert_eq!(
            c.coordinator,
            ["http://a:7700", "http://b:7700", "http://c:7700"]
        );
        assert_eq!(
            c.amqp_url,
            ["amqp://u:p@r1:5672/%2f", "amqp://u:p@r2:5672/%2f"]
        );
    }
}
