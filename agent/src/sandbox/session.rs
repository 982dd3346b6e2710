//! One sandbox per task: its namespaces, root and relays are built once, and every tofu command
//! of the task runs inside them.
//!
//! ```text
//! agent ── helper (session: holds init; SIGTERM ends it)
//!            └─ init (PID 1 of the task's namespace; reaps, relays, runs nothing itself)
//!                 ╎
//! agent ── helper (enter: joins init's namespaces) ── tofu (run user, rlimits, own group)
//! ```
//!
//! The session helper announces `ready PID START` on its standard output once init has built
//! the root (init's PID as the host sees it and its start time, which the entering helpers check,
//! so a reused PID is never entered). A command's helper opens init's namespaces, joins them and
//! forks tofu, which is then inside the task's PID namespace: it passes signals on as the
//! per-command helper does, kills what is left in tofu's process group when tofu ends, and
//! reproduces tofu's end. Ending the session kills init, and with it everything in the namespace,
//! before the session helper exits.
#![allow(unsafe_code)] // fork, signal handlers

use super::helper::{
    die_by, exec_task, fail, on_signals, start_relays, wait_for, FORWARD_TO, SETUP_FAILED,
};
use super::Spec;
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{killpg, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

/// The session a command enters: init's PID (host view) and its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enter {
    pub pid: i32,
    pub start: u64,
}

impl Enter {
    /// Parses the session helper's announcement, `ready PID START`.
    pub fn parse(line: &str) -> Option<Enter> {
        let mut w = line.split_whitespace();
        if w.next()? != "ready" {
            return None;
        }
        let pid = w.next()?.parse().ok()?;
        let start = w.next()?.parse().ok()?;
        Some(Enter { pid, start })
    }
}

/// What the helper reads to start a session for `spec` (JSON): the spec with `session` set and
/// nothing to run.
pub fn request(spec: &Spec) -> serde_json::Result<Vec<u8>> {
    let mut spec = spec.clone();
    spec.session = true;
    spec.argv.clear();
    serde_json::to_vec(&spec)
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

/// The session helper, once init is forked: announces the session when init has built it, then
/// waits. An end signal (SIGTERM, SIGINT, SIGHUP, SIGQUIT) kills init; the helper exits when init
/// (and so everything in the namespace) is gone.
pub(super) fn hold(init: Pid, status: OwnedFd) -> ! {
    FORWARD_TO.store(init.as_raw(), Ordering::SeqCst);
    on_signals(SigHandler::Handler(end));
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
    let _ = wait_for(init);
    std::process::exit(0)
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

/// A command's helper: joins the session's namespaces, forks tofu inside them and ends as tofu
/// ended.
pub(super) fn enter(spec: &Spec, e: &Enter) -> ! {
    let mut kinds = vec![];
    if spec.network_namespace {
        kinds.push(("net", CloneFlags::CLONE_NEWNET));
    }
    kinds.extend([
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("pid", CloneFlags::CLONE_NEWPID),
        // Last: it changes this process's root.
        ("mnt", CloneFlags::CLONE_NEWNS),
    ]);
    let gone = |why: String| -> ! {
        fail(format!(
            "the task's sandbox (init, PID {}) is gone: {why}",
            e.pid
        ))
    };
    let mut files = Vec::with_capacity(kinds.len());
    for (kind, flag) in &kinds {
        match std::fs::File::open(format!("/proc/{}/ns/{kind}", e.pid)) {
            Ok(f) => files.push((f, *flag)),
            Err(err) => gone(format!("{kind} namespace: {err}")),
        }
    }
    // Checked after opening: if init is still the process that was announced, the namespaces
    // opened are its own (its PID cannot have been reused while it lives).
    if start_time(e.pid) != Some(e.start) {
        gone("its PID now names another process".into())
    }
    for (f, flag) in &files {
        if let Err(err) = setns(f, *flag) {
            fail(format!("joining the task's sandbox ({flag:?}): {err}"))
        }
    }
    drop(files);
    match unsafe { fork() } {
        Err(err) => fail(format!("fork: {err}")),
        Ok(ForkResult::Child) => exec_task(spec, true),
        Ok(ForkResult::Parent { child }) => {
            let _ = nix::unistd::setpgid(child, child);
            FORWARD_TO.store(-child.as_raw(), Ordering::SeqCst);
            on_signals(SigHandler::Handler(super::helper::forward));
            let status = wait_for(child);
            // What tofu left in its group (background children of local-exec) goes with it.
            let _ = killpg(child, Signal::SIGKILL);
            match status {
                WaitStatus::Exited(_, code) => std::process::exit(code),
                WaitStatus::Signaled(_, sig, _) => die_by(sig as i32),
                _ => std::process::exit(SETUP_FAILED),
            }
        }
    }
}

/// Starts a session for `spec` and waits for its announcement, blocking (the benchmark and the
/// tests; tasks use the agent's async `runner::session`). Ended by [`end_blocking`].
pub fn start_blocking(
    helper: &std::path::Path,
    spec: &Spec,
) -> std::io::Result<(std::process::Child, Enter)> {
    use std::io::BufRead;
    let json = request(spec).map_err(std::io::Error::other)?;
    let mut child = std::process::Command::new(helper)
        .arg("__sandbox")
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .map(|mut i| i.write_all(&json))
        .transpose()?;
    let mut line = String::new();
    let out = child.stdout.take().expect("piped");
    std::io::BufReader::new(out).read_line(&mut line)?;
    match Enter::parse(&line) {
        Some(e) => Ok((child, e)),
        None => {
            let _ = child.kill();
            let status = child.wait()?;
            Err(std::io::Error::other(format!(
                "the session did not start ({status})"
            )))
        }
    }
}

/// Ends a session started by [`start_blocking`]: when this returns, nothing in it runs.
pub fn end_blocking(mut helper: std::process::Child) -> std::io::Result<std::process::ExitStatus> {
    let _ = nix::sys::signal::kill(Pid::from_raw(helper.id() as i32), Signal::SIGTERM);
    helper.wait()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_parses_and_a_start_time_is_read() {
        assert_eq!(
            Enter::parse("ready 4242 987654\n"),
            Some(Enter {
                pid: 4242,
                start: 987654
            })
        );
        assert_eq!(Enter::parse("tofuflow sandbox: no"), None);
        assert_eq!(Enter::parse("ready x 1"), None);
        assert!(start_time(std::process::id() as i32).is_some_and(|s| s > 0));
    }
}
