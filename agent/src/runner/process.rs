//! Spawning tofu: its own process group, stdin closed, a cleared environment, output read line by
//! line into the event stream; cancel = SIGINT to the group, a grace period, SIGKILL to the group.
//! After tofu exits, anything left in its group (background children of local-exec) is killed.
//! With the sandbox, the process started here is the sandbox helper (see `crate::sandbox`).
#![allow(unsafe_code)] // pre_exec for PR_SET_PDEATHSIG

use super::session::{Replies, Session};
use crate::error::{Result, TaskError};
use crate::report::LineSink;
use crate::sandbox::{Limits, Spec};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tofuflow_proto::v1::LogStream;
use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

/// What a signal that ended a task's process means, in the user's words.
pub fn explain_signal(sig: &str) -> String {
    match sig {
        "SIGXCPU" => "killed for CPU time: the task's CPU time limit was reached".into(),
        "SIGXFSZ" => "killed for file size: the task's file size limit was reached".into(),
        "SIGKILL" => "killed (SIGKILL: out of memory, the CPU hard limit, or a forced stop)".into(),
        "SIGSEGV" | "SIGBUS" | "SIGABRT" => format!("crashed ({sig})"),
        other => format!("killed by {other}"),
    }
}

pub struct Finished {
    pub code: i32,
    /// Set when the process was stopped by us.
    pub cancelled: bool,
    pub killed_by: Option<String>,
    pub stdout: String,
}

fn signal_group(pgid: i32, sig: Signal) {
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, ?sig, error = %e, "cannot signal process group"),
    }
}

/// How a command is started.
pub enum Launch<'a> {
    /// Straight from the agent: `bin` in `cwd` with rlimits (no sandbox helper).
    Direct {
        bin: &'a Path,
        cwd: &'a Path,
        limits: Limits,
        seccomp: bool,
    },
    /// Through the sandbox helper (`helper __sandbox`, the spec on its standard input);
    /// `spec.argv` gets the command. With `session`, the task's sandbox session starts it.
    Sandboxed {
        helper: &'a Path,
        spec: &'a Spec,
        session: Option<&'a Session>,
    },
}

/// A started command: what to wait for, its process group and its output.
struct Started {
    pgid: i32,
    waiting: Waiting,
    stdout: Box<dyn AsyncRead + Send + Unpin>,
    stderr: Box<dyn AsyncRead + Send + Unpin>,
}

/// What says how the command ended.
enum Waiting {
    /// The agent's own child (tofu, or the sandbox helper that runs it).
    Child(tokio::process::Child),
    /// The session's replies (tofu is the session helper's child).
    Session(Replies),
}

impl Waiting {
    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self {
            Waiting::Child(c) => c.wait().await,
            Waiting::Session(r) => r.ended().await,
        }
    }
}

/// Runs tofu with `args` and exactly `env`. With `capture`, stdout is returned instead of
/// streamed (for `show -json` / `output -json`, whose output is data, not log).
pub async fn run(
    launch: &Launch<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
    sink: &LineSink,
    capture: bool,
    cancel: &CancellationToken,
    grace: Duration,
) -> Result<Finished> {
    let mut started = match start(launch, args, env).await? {
        Ok(s) => s,
        Err(why) => {
            // The task's sandbox could not start it: said as the helper says a setup failure.
            sink.line(LogStream::Stderr, format!("tofuflow sandbox: {why}"));
            return Ok(Finished {
                code: crate::sandbox::helper::SETUP_FAILED,
                cancelled: false,
                killed_by: None,
                stdout: String::new(),
            });
        }
    };
    let pgid = started.pgid;
    let (out_task, err_task) = super::output::read(started.stdout, started.stderr, sink, capture);
    let (status, cancelled) = wait_or_stop(&mut started.waiting, pgid, sink, cancel, grace)
        .await
        .map_err(|e| TaskError::Launch(format!("waiting for tofu failed: {e}")))?;
    if let Waiting::Child(_) = started.waiting {
        // Nothing of the task outlives it: background children in its group go too (a
        // session's helper does this itself before it reports the end).
        signal_group(pgid, Signal::SIGKILL);
    }
    let stdout = tokio::time::timeout(Duration::from_secs(5), out_task)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    let _ = tokio::time::timeout(Duration::from_secs(5), err_task).await;
    use std::os::unix::process::ExitStatusExt;
    let killed_by = status.signal().map(|s| {
        Signal::try_from(s)
            .map(|x| x.as_str().to_string())
            .unwrap_or_else(|_| s.to_string())
    });
    Ok(Finished {
        code: status.code().unwrap_or(-1),
        cancelled,
        killed_by,
        stdout,
    })
}

/// Starts `launch` with `args` and exactly `env`. Inner Err: the task's sandbox session could
/// not start it (the reason).
async fn start(
    launch: &Launch<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Result<std::result::Result<Started, String>> {
    if let Launch::Sandboxed {
        spec,
        session: Some(session),
        ..
    } = launch
    {
        let mut spec = (*spec).clone();
        spec.argv.extend(args.iter().cloned());
        return Ok(session.command(&spec, env).await.map(|c| Started {
            pgid: c.pgid,
            waiting: Waiting::Session(c.replies),
            stdout: Box::new(c.stdout),
            stderr: Box::new(c.stderr),
        }));
    }
    let (mut cmd, spec_json) = command(launch, args, env)?;
    let bin = match launch {
        Launch::Direct { bin, .. } => bin.display().to_string(),
        Launch::Sandboxed { .. } => "the sandbox helper".to_string(),
    };
    let mut child = cmd.spawn().map_err(|e| {
        TaskError::Launch(format!(
            "cannot start {bin:?}: {e} (is OpenTofu installed? see --tofu-bin)"
        ))
    })?;
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    // The helper's spec: written whole, then its standard input is closed (the helper reads to
    // the end, then gives tofu /dev/null). A helper that died early shows in its exit status.
    if let (Some(json), Some(mut stdin)) = (spec_json, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&json).await;
    }
    let stdout = Box::new(child.stdout.take().expect("piped"));
    let stderr = Box::new(child.stderr.take().expect("piped"));
    Ok(Ok(Started {
        pgid,
        waiting: Waiting::Child(child),
        stdout,
        stderr,
    }))
}

/// The command for `launch` with `args` and exactly `env`, confined in the child before exec;
/// for the helper, also its spec (JSON, for its standard input).
fn command(
    launch: &Launch<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Result<(tokio::process::Command, Option<Vec<u8>>)> {
    let mut spec_json = None;
    let (mut cmd, limits, filter) = match launch {
        Launch::Direct {
            bin,
            cwd,
            limits,
            seccomp,
        } => {
            let mut c = tokio::process::Command::new(bin);
            c.args(args).current_dir(cwd);
            (
                c,
                Some(*limits),
                seccomp.then(crate::sandbox::seccomp::program),
            )
        }
        Launch::Sandboxed { helper, spec, .. } => {
            let mut spec = (*spec).clone();
            spec.argv.extend(args.iter().cloned());
            spec_json =
                Some(serde_json::to_vec(&spec).map_err(|e| TaskError::Launch(e.to_string()))?);
            let mut c = tokio::process::Command::new(helper);
            c.arg("__sandbox").current_dir("/");
            (c, None, None)
        }
    };
    cmd.env_clear()
        .envs(env)
        .stdin(if spec_json.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    confine(&mut cmd, limits, filter);
    Ok((cmd, spec_json))
}

/// Sets up the child before exec.
fn confine(
    cmd: &mut tokio::process::Command,
    limits: Option<Limits>,
    filter: Option<Vec<libc::sock_filter>>,
) {
    // In the child, before exec (only async-signal-safe system calls here):
    // - a new session, so it has no terminal to steal and its process group can be killed whole;
    // - no_new_privs, so setuid binaries cannot raise its privileges;
    // - the parent-death signal: if the agent dies, tofu gets SIGTERM (it saves state and
    //   unlocks, as on SIGINT) instead of running on unsupervised;
    // - resource limits when tofu is started directly (the sandbox helper sets them itself,
    //   for tofu only) and no core dumps.
    // This forces the fork path instead of posix_spawn; the benchmark measures the cost.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::sys::prctl::set_no_new_privs().map_err(std::io::Error::from)?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
            match &limits {
                Some(l) => l.apply().map_err(std::io::Error::from)?,
                None => {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
                        .map_err(std::io::Error::from)?
                }
            }
            if let Some(f) = &filter {
                crate::sandbox::seccomp::install(f).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
}

/// Waits for tofu; on cancel: SIGINT to its group, the grace period, then SIGKILL. Returns its
/// status and whether it was stopped by us.
async fn wait_or_stop(
    child: &mut Waiting,
    pgid: i32,
    sink: &LineSink,
    cancel: &CancellationToken,
    grace: Duration,
) -> std::io::Result<(std::process::ExitStatus, bool)> {
    let mut cancelled = false;
    let status = tokio::select! {
        s = child.wait() => s,
        _ = cancel.cancelled() => {
            cancelled = true;
            sink.line(LogStream::System, format!("tofuflow: cancelling: SIGINT to tofu (process group {pgid}), SIGKILL in {}s", grace.as_secs()));
            signal_group(pgid, Signal::SIGINT);
            tokio::select! {
                s = child.wait() => s,
                _ = tokio::time::sleep(grace) => {
                    sink.line(LogStream::System, "tofuflow: tofu did not stop within the grace period: SIGKILL".to_string());
                    signal_group(pgid, Signal::SIGKILL);
                    child.wait().await
                }
            }
        }
    }?;
    Ok((status, cancelled))
}
