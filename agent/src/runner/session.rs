//! The task's sandbox session (see `crate::sandbox::session`): started before the task's first
//! tofu command, ended (everything in it killed) when the task's commands are done.
#![allow(unsafe_code)] // pre_exec for setsid and the parent-death signal

use crate::report::LineSink;
use crate::sandbox::session::Enter;
use crate::sandbox::Spec;
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tofuflow_proto::v1::LogStream;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long the sandbox may take to be built before the task fails.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long ending it may take before the helper is killed outright.
const END_WITHIN: Duration = Duration::from_secs(10);

/// A running session: its helper (which holds init) and what commands enter.
pub struct Session {
    helper: tokio::process::Child,
    pub enter: Enter,
}

impl Session {
    /// Starts the helper for `spec` as a session and waits for it to say the sandbox is built.
    /// Its standard error (a `tofuflow sandbox:` line when it fails) goes to the task's log,
    /// or to the agent's own when there is no task yet (`sink` None: built ahead).
    pub async fn start(
        helper: &Path,
        spec: &Spec,
        sink: Option<&LineSink>,
    ) -> Result<Session, String> {
        let json = crate::sandbox::session::request(spec).map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new(helper);
        cmd.arg("__sandbox")
            .current_dir("/")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(match sink {
                Some(_) => Stdio::piped(),
                None => Stdio::inherit(),
            })
            // A task that ends any other way (an error, a panic) still takes its sandbox along.
            .kill_on_drop(true);
        // Its own session (signals to the agent's group are not its), and it ends when the
        // agent does.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the sandbox helper {helper:?}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&json).await;
        }
        if let (Some(err), Some(sink)) = (child.stderr.take(), sink) {
            let sink = sink.clone();
            tokio::spawn(async move {
                super::output::stream(err, &sink, LogStream::Stderr).await;
            });
        }
        let out = child.stdout.take().expect("piped");
        let mut first = String::new();
        let mut out = BufReader::new(out);
        let read = out.read_line(&mut first);
        let enter = match tokio::time::timeout(READY_WITHIN, read).await {
            Ok(Ok(_)) => Enter::parse(&first),
            _ => None,
        };
        let Some(enter) = enter else {
            let _ = child.start_kill();
            let status = child.wait().await.ok();
            return Err(format!(
                "the sandbox helper did not build the task's sandbox (it ended: {})",
                status.map_or("unknown".into(), |s| s.to_string())
            ));
        };
        Ok(Session {
            helper: child,
            enter,
        })
    }

    /// Whether the helper (and so the sandbox) is still there.
    pub fn alive(&mut self) -> bool {
        matches!(self.helper.try_wait(), Ok(None))
    }

    /// Moves the session's helper and init (with its relays) into a task's cgroups, by their
    /// `cgroup.procs` files: a session built before its task joins the task's cgroup this way.
    pub fn join_cgroup(&self, procs: &[std::path::PathBuf]) -> std::io::Result<()> {
        let helper = self.helper.id().ok_or(std::io::ErrorKind::NotFound)?;
        for file in procs {
            for pid in [helper as i32, self.enter.pid] {
                std::fs::write(file, pid.to_string())?;
            }
        }
        Ok(())
    }

    /// Ends the session: init and everything in the namespace are killed, and the helper has
    /// exited (after init) when this returns.
    pub async fn end(mut self) {
        if let Some(pid) = self.helper.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(END_WITHIN, self.helper.wait())
            .await
            .is_err()
        {
            tracing::warn!("the sandbox session did not end in time: killing its helper");
            let _ = self.helper.start_kill();
            let _ = self.helper.wait().await;
        }
    }
}
