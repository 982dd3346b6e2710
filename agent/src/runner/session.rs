//! The task's sandbox session (see `crate::sandbox::session`): started before the task's first
//! tofu command, ended (everything in it killed) when the task's commands are done. Each command
//! is sent to it on its command socket; the session's helper forks it into the sandbox.
#![allow(unsafe_code)] // pre_exec for setsid, the parent-death signal and the inherited socket

use crate::report::LineSink;
use crate::sandbox::session::{self as sandbox_session, Command, Ready, Reply};
use crate::sandbox::Spec;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tofuflow_proto::v1::LogStream;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// How long the sandbox may take to be built before the task fails.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long ending it may take before the helper is killed outright.
const END_WITHIN: Duration = Duration::from_secs(10);
/// How long the session may take to say it started a command.
const STARTED_WITHIN: Duration = Duration::from_secs(30);

/// A running session: its helper (which holds init and starts commands) and its command socket.
pub struct Session {
    helper: tokio::process::Child,
    control: OwnedFd,
    pub ready: Ready,
}

/// A command running in a session: its process group, output and the session's replies.
pub struct InSession {
    pub pgid: i32,
    pub stdout: tokio::net::unix::pipe::Receiver,
    pub stderr: tokio::net::unix::pipe::Receiver,
    pub replies: Replies,
}

/// The replies about one command, read line by line (cancel-safe: nothing read is lost when a
/// wait is abandoned).
pub struct Replies {
    stream: tokio::net::UnixStream,
    got: Vec<u8>,
}

impl Replies {
    /// The next reply; `None` when the session closed the socket.
    pub async fn next(&mut self) -> std::io::Result<Option<Reply>> {
        loop {
            if let Some(i) = self.got.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.got.drain(..=i).collect();
                if let Some(r) = Reply::parse(&String::from_utf8_lossy(&line)) {
                    return Ok(Some(r));
                }
                continue;
            }
            let mut b = [0u8; 256];
            let n = self.stream.read(&mut b).await?;
            if n == 0 {
                return Ok(None);
            }
            self.got.extend_from_slice(&b[..n]);
        }
    }

    /// How the command ended, as a wait status would say it (the sandbox's setup failure when
    /// the session ended without saying).
    pub async fn ended(&mut self) -> std::io::Result<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        while let Some(r) = self.next().await? {
            if let Some(s) = r.wait_status() {
                return Ok(std::process::ExitStatus::from_raw(s));
            }
        }
        Ok(std::process::ExitStatus::from_raw(
            crate::sandbox::helper::SETUP_FAILED << 8,
        ))
    }
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
        let (control, theirs) = sandbox_session::control_pair()
            .map_err(|e| format!("cannot make the sandbox's command socket: {e}"))?;
        let fd = theirs.as_raw_fd();
        let json = sandbox_session::request(spec, fd).map_err(|e| e.to_string())?;
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
        // Its own session (signals to the agent's group are not its), it ends when the agent
        // does, and it keeps its end of the command socket.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
                sandbox_session::inherit(fd)
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the sandbox helper {helper:?}: {e}"))?;
        drop(theirs);
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&json).await;
        }
        if let (Some(err), Some(sink)) = (child.stderr.take(), sink) {
            let sink = sink.clone();
            tokio::spawn(async move {
                super::output::stream(err, &sink, LogStream::Stderr).await;
            });
        }
        let ready = announced(&mut child).await?;
        Ok(Session {
            helper: child,
            control,
            ready,
        })
    }

    /// Starts `spec.argv` in the session with exactly `env`: once this returns, it runs.
    pub async fn command(
        &self,
        spec: &Spec,
        env: &BTreeMap<String, String>,
    ) -> Result<InSession, String> {
        let command = Command {
            spec: spec.clone(),
            env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let sent = sandbox_session::send(&self.control, &command).map_err(|e| e.to_string())?;
        let io = |e: std::io::Error| format!("the task's sandbox: {e}");
        sent.replies.set_nonblocking(true).map_err(io)?;
        let mut replies = Replies {
            stream: tokio::net::UnixStream::from_std(sent.replies).map_err(io)?,
            got: Vec::new(),
        };
        let pgid = match tokio::time::timeout(STARTED_WITHIN, replies.next()).await {
            Ok(Ok(Some(Reply::Started(pid)))) => pid,
            Ok(Ok(Some(Reply::Failed(why)))) => return Err(why),
            Ok(Ok(_)) => return Err("the task's sandbox is gone".into()),
            Ok(Err(e)) => return Err(io(e)),
            Err(_) => return Err("the task's sandbox did not start the command in time".into()),
        };
        let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd;
        Ok(InSession {
            pgid,
            stdout: pipe(sent.stdout).map_err(io)?,
            stderr: pipe(sent.stderr).map_err(io)?,
            replies,
        })
    }

    /// Whether the helper (and so the sandbox) is still there.
    pub fn alive(&mut self) -> bool {
        matches!(self.helper.try_wait(), Ok(None))
    }

    /// Moves the session's helper and init (with its relays) into a task's cgroups, by their
    /// `cgroup.procs` files: a session built before its task joins the task's cgroup this way,
    /// and the commands its helper starts after are in it from their start.
    pub fn join_cgroup(&self, procs: &[std::path::PathBuf]) -> std::io::Result<()> {
        let helper = self.helper.id().ok_or(std::io::ErrorKind::NotFound)?;
        for file in procs {
            for pid in [helper as i32, self.ready.pid] {
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

/// Waits for the helper's `ready` line; a helper that does not say it is killed.
async fn announced(child: &mut tokio::process::Child) -> Result<Ready, String> {
    let out = child.stdout.take().expect("piped");
    let mut first = String::new();
    let mut out = BufReader::new(out);
    let read = out.read_line(&mut first);
    let ready = match tokio::time::timeout(READY_WITHIN, read).await {
        Ok(Ok(_)) => Ready::parse(&first),
        _ => None,
    };
    if let Some(ready) = ready {
        return Ok(ready);
    }
    let _ = child.start_kill();
    let status = child.wait().await.ok();
    Err(format!(
        "the sandbox helper did not build the task's sandbox (it ended: {})",
        status.map_or("unknown".into(), |s| s.to_string())
    ))
}
