//! One sandbox per task: its namespaces, root and relays are built once, and every tofu command
//! of the task runs inside them, started by the session's helper without a process of its own.
//!
//! ```text
//! agent ── helper (session: holds init, starts the task's commands; SIGTERM ends it)
//!  ╎         ├─ init (PID 1 of the task's namespace; reaps, relays, runs nothing itself)
//!  ╎         └─ tofu (forked into init's namespaces: run user, rlimits, own group)
//!  └─ command socket: a command, and tofu's stdout, stderr and reply socket with it
//! ```
//!
//! The session helper unshares the namespaces itself before it forks init, so it is in the
//! task's mount, IPC, UTS and network namespaces, and every process it forks after init is in
//! the task's PID namespace. It announces `ready PID START` on its standard output once init
//! has built the root (init's PID as the host sees it and its start time), then serves its
//! command socket (`spec.control`, a `SOCK_SEQPACKET` socket the agent made): each message is a
//! [`Command`] with three descriptors: tofu's standard output and error and a socket for the
//! [`Reply`]s. It forks tofu, answers `P PID` (tofu's PID and process group, as the host sees
//! them: the agent signals that group to cancel) and, when tofu has ended and what it left in
//! its group is killed, `E CODE` or `S SIGNAL`. Ending the session kills init, and with it
//! everything in the namespace, before the session helper exits; so does the agent closing the
//! command socket.
#![allow(unsafe_code)] // fork, signal handlers, taking the inherited socket

use super::helper::{
    exec_task, fail, on_signals, start_relays, wait_for, Exec, FORWARD_TO, SETUP_FAILED,
};
use super::Spec;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;

/// The largest command message (its spec and environment, JSON).
pub const MAX_COMMAND: usize = 4 << 20;

/// A session's init: its PID (host view) and its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub pid: i32,
    pub start: u64,
}

impl Ready {
    /// Parses the session helper's announcement, `ready PID START`.
    pub fn parse(line: &str) -> Option<Ready> {
        let mut w = line.split_whitespace();
        if w.next()? != "ready" {
            return None;
        }
        let pid = w.next()?.parse().ok()?;
        let start = w.next()?.parse().ok()?;
        Some(Ready { pid, start })
    }
}

/// One command of a task: its spec (argv, cwd, run user, limits, seccomp) and exactly its
/// environment.
#[derive(Debug, Serialize, Deserialize)]
pub struct Command {
    pub spec: Spec,
    pub env: Vec<(String, String)>,
}

/// What the session answers about a command, one line each on its reply socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Forked: tofu's PID, which is also its process group (host view).
    Started(i32),
    Exited(i32),
    Signaled(i32),
    /// Not started (the reason; the sandbox may be gone).
    Failed(String),
}

impl Reply {
    pub fn line(&self) -> String {
        match self {
            Reply::Started(pid) => format!("P {pid}\n"),
            Reply::Exited(code) => format!("E {code}\n"),
            Reply::Signaled(sig) => format!("S {sig}\n"),
            Reply::Failed(why) => format!("F {}\n", why.replace('\n', " ")),
        }
    }

    pub fn parse(line: &str) -> Option<Reply> {
        let line = line.trim_end_matches('\n');
        let (kind, rest) = line.split_once(' ')?;
        match kind {
            "P" => rest.parse().ok().map(Reply::Started),
            "E" => rest.parse().ok().map(Reply::Exited),
            "S" => rest.parse().ok().map(Reply::Signaled),
            "F" => Some(Reply::Failed(rest.to_string())),
            _ => None,
        }
    }

    /// The wait status a parent would have seen (for `ExitStatusExt::from_raw`).
    pub fn wait_status(&self) -> Option<i32> {
        match self {
            Reply::Exited(code) => Some((code & 0xff) << 8),
            Reply::Signaled(sig) => Some(sig & 0x7f),
            Reply::Failed(_) => Some(SETUP_FAILED << 8),
            Reply::Started(_) => None,
        }
    }
}

/// What the helper reads to start a session for `spec` (JSON): the spec with `session` set,
/// nothing to run, and its command socket's descriptor number in the helper.
pub fn request(spec: &Spec, control: RawFd) -> serde_json::Result<Vec<u8>> {
    let mut spec = spec.clone();
    spec.session = true;
    spec.argv.clear();
    spec.control = Some(control);
    serde_json::to_vec(&spec)
}

/// The command socket's two ends: the agent's, and the helper's (inherited by it).
pub fn control_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    // Room for a large environment in one message (as root; else the default, and a clear
    // error when a command does not fit).
    let _ =
        nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::SndBufForce, &MAX_COMMAND);
    Ok((ours, theirs))
}

/// Clears close-on-exec on the helper's end, in the child between fork and exec
/// (async-signal-safe).
pub fn inherit(fd: RawFd) -> std::io::Result<()> {
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A command sent to a session: the reading ends of tofu's stdout and stderr, and the reply
/// socket (whose first reply is read by the caller).
pub struct Sent {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub replies: UnixStream,
}

/// Sends `command` on the session's command socket with fresh pipes for tofu's output.
pub fn send(control: &OwnedFd, command: &Command) -> std::io::Result<Sent> {
    use nix::fcntl::OFlag;
    let json = serde_json::to_vec(command).map_err(std::io::Error::other)?;
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (replies, theirs) = UnixStream::pair()?;
    let fds = [out_w.as_raw_fd(), err_w.as_raw_fd(), theirs.as_raw_fd()];
    match sendmsg::<()>(
        control.as_raw_fd(),
        &[IoSlice::new(&json)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    ) {
        Ok(_) => Ok(Sent {
            stdout: out_r,
            stderr: err_r,
            replies,
        }),
        Err(nix::errno::Errno::EMSGSIZE) => Err(std::io::Error::other(format!(
            "the command and its environment ({} bytes) do not fit in one message to the \
             task's sandbox (at most {MAX_COMMAND} bytes): pass large values as files",
            json.len()
        ))),
        Err(e) => Err(std::io::Error::other(format!(
            "the task's sandbox is gone (its command socket: {e})"
        ))),
    }
}

/// The start time of process `pid` (clock ticks since boot, field 22 of `/proc/PID/stat`).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

extern "C" fn end(_sig: libc::c_int) {
    let to = FORWARD_TO.load(Ordering::SeqCst);
    if to != 0 {
        // kill(2) is async-signal-safe.
        unsafe { libc::kill(to, libc::SIGKILL) };
    }
}

/// init of a session, once the root is built: starts the relays, says it is ready and reaps
/// whatever ends in the namespace until it is killed.
pub(super) fn serve(
    spec: &Spec,
    listeners: Vec<(std::net::TcpListener, String)>,
    mut status: std::fs::File,
) -> ! {
    // SIGCHLD stays pending while blocked (in every thread), so none is missed between a reap
    // and the wait for the next.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    if let Err(e) = chld.thread_block() {
        fail(format!("blocking SIGCHLD: {e}"))
    }
    start_relays(spec, listeners);
    let Some(start) = start_time(std::process::id() as i32) else {
        fail("cannot read init's start time")
    };
    if status.write_all(format!("R{start}").as_bytes()).is_err() {
        std::process::exit(SETUP_FAILED)
    }
    drop(status);
    loop {
        while let Ok(s) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            if s == WaitStatus::StillAlive {
                break;
            }
        }
        let _ = chld.wait();
    }
}

/// The session helper, once init is forked: announces the session when init has built it, then
/// serves its command socket. An end signal (SIGTERM, SIGINT, SIGHUP, SIGQUIT) kills init; the
/// helper exits when init (and so everything in the namespace) is gone.
pub(super) fn hold(spec: &Spec, init: Pid, status: OwnedFd) -> ! {
    FORWARD_TO.store(init.as_raw(), Ordering::SeqCst);
    on_signals(SigHandler::Handler(end));
    // SIGCHLD is read from a signalfd; blocked before anything can end.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    if let Err(e) = chld.thread_block() {
        ends(init, format!("blocking SIGCHLD: {e}"))
    }
    let Some(control) = spec.control.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }) else {
        ends(init, "a session needs its command socket")
    };
    let _ = nix::fcntl::fcntl(
        &control,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    // `R` and init's start time (this process cannot read it: init's pivot_root moved its root
    // too, with the task's /proc).
    let mut word = String::new();
    let _ = std::fs::File::from(status).read_to_string(&mut word);
    let start = word.strip_prefix('R').and_then(|s| s.parse::<u64>().ok());
    let Some(start) = start else {
        // init said why on standard error.
        let _ = wait_for(init);
        std::process::exit(SETUP_FAILED)
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "ready {init} {start}")
        .and_then(|()| out.flush())
        .is_err()
    {
        let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
    }
    drop(out);
    serve_commands(init, &control, &chld)
}

fn ends(init: Pid, why: impl std::fmt::Display) -> ! {
    let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
    let _ = wait_for(init);
    fail(why)
}

/// Starts each command that arrives and reports each end, until init is gone.
fn serve_commands(init: Pid, control: &OwnedFd, chld: &SigSet) -> ! {
    let sfd = match SignalFd::with_flags(chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => ends(init, format!("signalfd: {e}")),
    };
    let mut running: HashMap<i32, UnixStream> = HashMap::new();
    let mut open = true;
    let mut buf = vec![0u8; MAX_COMMAND];
    loop {
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(control.as_fd(), PollFlags::POLLIN),
        ];
        let n = if open { 2 } else { 1 };
        match poll(&mut fds[..n], PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => ends(init, format!("poll: {e}")),
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        let (reap_now, command) = (ready(&fds[0]), open && ready(&fds[1]));
        if reap_now {
            while let Ok(Some(_)) = sfd.read_signal() {}
            reap(init, &mut running);
        }
        if command && !take_command(control, &mut buf, &mut running) {
            // The agent is gone or ended the session by closing the socket.
            open = false;
            let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
        }
    }
}

/// Reaps what ended: a command's end is reported (after what it left in its group is killed);
/// init's ends the helper.
fn reap(init: Pid, running: &mut HashMap<i32, UnixStream>) {
    loop {
        let (pid, reply) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, Reply::Exited(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Reply::Signaled(sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        if pid == init {
            // Everything in the namespace is gone with it; reported commands were reaped first.
            for (_, mut r) in running.drain() {
                let _ = r.write_all(
                    Reply::Failed("the task's sandbox ended".into())
                        .line()
                        .as_bytes(),
                );
            }
            std::process::exit(0)
        }
        if let Some(mut r) = running.remove(&pid.as_raw()) {
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = r.write_all(reply.line().as_bytes());
        }
    }
}

/// Receives one command and starts it; false when the socket is closed.
fn take_command(control: &OwnedFd, buf: &mut [u8], running: &mut HashMap<i32, UnixStream>) -> bool {
    let mut cmsg = nix::cmsg_space!([RawFd; 3]);
    let mut iov = [IoSliceMut::new(buf)];
    let (len, fds) = match recvmsg::<()>(
        control.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    ) {
        Ok(msg) => {
            let mut fds = Vec::new();
            for c in msg.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::ScmRights(r) = c {
                    fds.extend(r.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
            (msg.bytes, fds)
        }
        Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => return true,
        Err(_) => return false,
    };
    if len == 0 && fds.is_empty() {
        return false;
    }
    let Ok::<[OwnedFd; 3], _>([stdout, stderr, replies]) = fds.try_into() else {
        return true;
    };
    let mut replies = UnixStream::from(replies);
    let reply = match serde_json::from_slice::<Command>(&iov[0][..len]) {
        Ok(c) => start(&c, stdout, stderr),
        Err(e) => Reply::Failed(format!("bad command: {e}")),
    };
    // The environment (credentials) is not kept in this process's memory longer than needed.
    iov[0][..len].fill(0);
    let _ = replies.write_all(reply.line().as_bytes());
    if let Reply::Started(pid) = reply {
        running.insert(pid, replies);
    }
    true
}

/// Forks tofu into the task's namespaces with its output on `stdout` and `stderr`. Signals are
/// blocked across the fork: one sent to tofu's group before it has reset this helper's
/// handlers (a cancel at that moment) waits, and then meets tofu's own dispositions.
fn start(c: &Command, stdout: OwnedFd, stderr: OwnedFd) -> Reply {
    use nix::sys::signal::{sigprocmask, SigmaskHow};
    let mut before = SigSet::empty();
    if let Err(e) = sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&SigSet::all()),
        Some(&mut before),
    ) {
        return Reply::Failed(format!("blocking signals: {e}"));
    }
    let forked = unsafe { fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
    }
    match forked {
        Err(e) => Reply::Failed(format!("the task's sandbox is gone (fork: {e})")),
        Ok(ForkResult::Child) => {
            for (fd, to) in [(&stdout, 1), (&stderr, 2)] {
                if unsafe { libc::dup2(fd.as_raw_fd(), to) } < 0 {
                    std::process::exit(SETUP_FAILED)
                }
            }
            drop((stdout, stderr));
            exec_task(&c.spec, Exec::Forked(&c.env))
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = nix::unistd::setpgid(child, child);
            Reply::Started(child.as_raw())
        }
    }
}

/// Starts a session for `spec` and waits for its announcement, blocking (the benchmark and the
/// tests; tasks use the agent's async `runner::session`). Ended by [`Blocking::end`].
pub fn start_blocking(helper: &std::path::Path, spec: &Spec) -> std::io::Result<Blocking> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let (control, theirs) = control_pair()?;
    let json = request(spec, theirs.as_raw_fd()).map_err(std::io::Error::other)?;
    let fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new(helper);
    cmd.arg("__sandbox")
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    unsafe { cmd.pre_exec(move || inherit(fd)) };
    let mut child = cmd.spawn()?;
    drop(theirs);
    child
        .stdin
        .take()
        .map(|mut i| i.write_all(&json))
        .transpose()?;
    let mut line = String::new();
    let out = child.stdout.take().expect("piped");
    std::io::BufReader::new(out).read_line(&mut line)?;
    match Ready::parse(&line) {
        Some(ready) => Ok(Blocking {
            helper: child,
            control,
            ready,
        }),
        None => {
            let _ = child.kill();
            let status = child.wait()?;
            Err(std::io::Error::other(format!(
                "the session did not start ({status})"
            )))
        }
    }
}

/// A session started by [`start_blocking`].
pub struct Blocking {
    pub helper: std::process::Child,
    pub control: OwnedFd,
    pub ready: Ready,
}

impl Blocking {
    /// Runs `spec.argv` in the session with exactly `env`: [`run_blocking`].
    pub fn run(&self, spec: &Spec, env: &[(&str, &str)]) -> std::io::Result<std::process::Output> {
        run_blocking(&self.control, spec, env)
    }

    /// Ends the session: when this returns, nothing in it runs.
    pub fn end(mut self) -> std::io::Result<std::process::ExitStatus> {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.helper.id() as i32), Signal::SIGTERM);
        self.helper.wait()
    }
}

/// Runs `spec.argv` in the session whose command socket is `control`, with exactly `env`, and
/// waits for it: its exit status, stdout and stderr. A session that cannot start it gives the
/// helper's setup failure (125) with the reason on stderr.
pub fn run_blocking(
    control: &OwnedFd,
    spec: &Spec,
    env: &[(&str, &str)],
) -> std::io::Result<std::process::Output> {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let command = Command {
        spec: spec.clone(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let failed = |why: String| std::process::Output {
        status: std::process::ExitStatus::from_raw(SETUP_FAILED << 8),
        stdout: vec![],
        stderr: format!("tofuflow sandbox: {why}\n").into_bytes(),
    };
    let sent = match send(control, &command) {
        Ok(s) => s,
        Err(e) => return Ok(failed(e.to_string())),
    };
    let read_all = |fd: OwnedFd| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::fs::File::from(fd).read_to_end(&mut v);
            v
        })
    };
    let (out, err) = (read_all(sent.stdout), read_all(sent.stderr));
    let mut status = None;
    for line in std::io::BufReader::new(sent.replies).lines() {
        match Reply::parse(&line?) {
            Some(Reply::Failed(why)) => return Ok(failed(why)),
            Some(r) if r.wait_status().is_some() => {
                status = r.wait_status();
                break;
            }
            _ => {}
        }
    }
    Ok(std::process::Output {
        status: std::process::ExitStatus::from_raw(status.unwrap_or(SETUP_FAILED << 8)),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_and_replies_parse_and_a_start_time_is_read() {
        assert_eq!(
            Ready::parse("ready 4242 987654\n"),
            Some(Ready {
                pid: 4242,
                start: 987654
            })
        );
        assert_eq!(Ready::parse("tofuflow sandbox: no"), None);
        assert_eq!(Ready::parse("ready x 1"), None);
        assert!(start_time(std::process::id() as i32).is_some_and(|s| s > 0));
        for r in [
            Reply::Started(17),
            Reply::Exited(3),
            Reply::Signaled(9),
            Reply::Failed("gone: fork".into()),
        ] {
            assert_eq!(Reply::parse(&r.line()), Some(r));
        }
        assert_eq!(Reply::Exited(3).wait_status(), Some(3 << 8));
        assert_eq!(Reply::Signaled(9).wait_status(), Some(9));
        assert_eq!(Reply::parse("X 1"), None);
    }
}
