//! The sandbox helper: `tofuflow-agent __sandbox`, started by the agent for every tofu command
//! without namespaces, and with them once per task, as a session that builds them and starts
//! each of the task's commands (see [`super::session`]; the layout below is the one-shot form
//! the start-up probe uses).
//! It reads its spec (JSON) from standard input, which the agent closes after writing it, and
//! then puts `/dev/null` there for tofu: nothing of the spec is on any command line (`ps`), and
//! tofu's standard input is empty as before. It runs synchronously and single-threaded until its
//! last fork (no async runtime).
//!
//! With namespaces it makes three processes:
//!
//! ```text
//! agent ── helper (host PID namespace; the process the agent waits for and signals)
//!            └─ init (PID 1 of a new PID namespace; builds the new root, relays the network)
//!                 └─ tofu (run user, rlimits, no_new_privs, its own process group)
//! ```
//!
//! Signals to the helper are passed on exactly once: helper → init → tofu's process group. When
//! tofu exits, init exits with its status, and the kernel kills everything left in the
//! namespace: nothing a task started can outlive it. The helper reproduces tofu's end (exit code
//! or signal) so the agent sees what it would see without a sandbox. Setup failures print
//! `tofuflow sandbox: …` on stderr and exit 125.
#![allow(unsafe_code)] // fork, signal handlers, ioctl

use super::{Mount, Spec};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// Exit code of the helper when the sandbox could not be set up.
pub const SETUP_FAILED: i32 = 125;

pub(super) static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

pub(super) extern "C" fn forward(sig: libc::c_int) {
    let to = FORWARD_TO.load(Ordering::SeqCst);
    if to != 0 {
        // kill(2) is async-signal-safe.
        unsafe { libc::kill(to, sig) };
    }
}

pub(super) fn on_signals(handler: SigHandler) {
    let act = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        let _ = unsafe { sigaction(s, &act) };
    }
}

pub(super) fn fail(what: impl std::fmt::Display) -> ! {
    eprintln!("tofuflow sandbox: {what}");
    std::process::exit(SETUP_FAILED)
}

/// Reads the spec from standard input to its end, then replaces standard input with /dev/null.
fn read_spec() -> Spec {
    let mut json = String::new();
    if let Err(e) = std::io::stdin().lock().read_to_string(&mut json) {
        fail(format!(
            "cannot read the sandbox spec from standard input: {e}"
        ));
    }
    let null = match std::fs::File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => fail(format!("cannot open /dev/null: {e}")),
    };
    if let Err(e) = nix::unistd::dup2_stdin(null) {
        fail(format!("cannot put /dev/null on standard input: {e}"));
    }
    match serde_json::from_str(&json) {
        Ok(s) => s,
        Err(e) => fail(format!("bad sandbox spec: {e}")),
    }
}

/// Entry point of `tofuflow-agent __sandbox` (the spec on standard input).
pub fn main() -> ! {
    let spec = read_spec();
    // Join the task's cgroups first, so everything below is counted and limited.
    for procs in &spec.cgroup_procs {
        if let Err(e) = std::fs::write(procs, std::process::id().to_string()) {
            fail(format!("cannot join cgroup {}: {e}", procs.display()));
        }
    }
    if !spec.namespaces {
        // No namespaces: this process becomes tofu (it already has its own session).
        exec_task(&spec, Exec::Replace);
    }
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if spec.network_namespace {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = unshare(flags) {
        fail(format!(
            "cannot create namespaces ({e}); run the agent as root or with --sandbox off"
        ));
    }
    let (r, w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail(format!("pipe: {e}")),
    };
    match unsafe { fork() } {
        Err(e) => fail(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(r);
            init(&spec, w)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(w);
            if spec.session {
                super::session::hold(&spec, child, r)
            }
            supervise(child, r)
        }
    }
}

/// The helper's part: passes signals to init, waits for it and ends the way tofu ended (init
/// writes that on `status`).
fn supervise(child: Pid, status: OwnedFd) -> ! {
    FORWARD_TO.store(child.as_raw(), Ordering::SeqCst);
    on_signals(SigHandler::Handler(forward));
    let status_of_init = wait_for(child);
    let mut note = String::new();
    let _ = std::fs::File::from(status).read_to_string(&mut note);
    match (
        note.chars().next(),
        note[note.len().min(1)..].parse::<i32>(),
    ) {
        (Some('E'), Ok(code)) => std::process::exit(code),
        (Some('S'), Ok(sig)) => die_by(sig),
        _ => match status_of_init {
            // init itself was killed (SIGKILL from the agent): say the same.
            WaitStatus::Signaled(_, sig, _) => die_by(sig as i32),
            WaitStatus::Exited(_, code) => std::process::exit(code),
            _ => std::process::exit(SETUP_FAILED),
        },
    }
}

/// Waits for `child` to end (through interruptions by forwarded signals).
pub(super) fn wait_for(child: Pid) -> WaitStatus {
    loop {
        match waitpid(child, None) {
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return s,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => fail(format!("waitpid: {e}")),
        }
    }
}

/// Ends this process the way tofu ended: by the same signal.
pub(super) fn die_by(sig: i32) -> ! {
    on_signals(SigHandler::SigDfl);
    if let Ok(s) = Signal::try_from(sig) {
        let act = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        let _ = unsafe { sigaction(s, &act) };
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
            Some(&SigSet::all()),
            None,
        );
        let _ = kill(Pid::this(), s);
    }
    std::process::exit(128 + sig)
}

/// PID 1 of the task's namespace.
fn init(spec: &Spec, status: OwnedFd) -> ! {
    // Signals reach init only through the helper (exactly once): out of the helper's group,
    // which the agent signals. If the helper dies, init dies, and with it the namespace.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let mut status = std::fs::File::from(status);
    let listeners = match setup(spec) {
        Ok(l) => l,
        Err(e) => {
            let _ = status.write_all(b"F");
            fail(e)
        }
    };
    if spec.session {
        super::session::serve(spec, listeners, status)
    }
    match unsafe { fork() } {
        Err(e) => {
            let _ = status.write_all(b"F");
            fail(format!("fork: {e}"))
        }
        Ok(ForkResult::Child) => exec_task(spec, Exec::InInit),
        Ok(ForkResult::Parent { child }) => {
            let _ = nix::unistd::setpgid(child, child);
            FORWARD_TO.store(-child.as_raw(), Ordering::SeqCst);
            on_signals(SigHandler::Handler(forward));
            start_relays(spec, listeners);
            // Reap everything (orphans are re-parented to us) until tofu ends.
            loop {
                match waitpid(Pid::from_raw(-1), None) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                        let _ = status.write_all(format!("E{code}").as_bytes());
                        std::process::exit(code)
                    }
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                        let _ = status.write_all(format!("S{}", sig as i32).as_bytes());
                        std::process::exit(0)
                    }
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        let _ = status.write_all(b"F");
                        fail(format!("waitpid in the sandbox: {e}"))
                    }
                }
            }
        }
    }
}

/// A thread per relay listener, carrying its connections to the gateway.
pub(super) fn start_relays(spec: &Spec, listeners: Vec<(std::net::TcpListener, String)>) {
    if let Some(gw) = &spec.gateway {
        for (l, tag) in listeners {
            let gw = gw.clone();
            std::thread::spawn(move || relay(l, tag, gw));
        }
    }
}

fn ctx<T, E: std::fmt::Display>(
    r: Result<T, E>,
    what: impl FnOnce() -> String,
) -> Result<T, String> {
    r.map_err(|e| format!("{}: {e}", what()))
}

fn mkdirs(p: &Path) -> Result<(), String> {
    ctx(std::fs::create_dir_all(p), || {
        format!("mkdir {}", p.display())
    })
}

fn inside(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// Builds the new root on a tmpfs, pivots into it, brings up loopback and binds the relay
/// listeners. Returns the listeners with their gateway tags.
fn setup(spec: &Spec) -> Result<Vec<(std::net::TcpListener, String)>, String> {
    let none: Option<&str> = None;
    ctx(
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none),
        || "making mounts private".into(),
    )?;
    let root = &spec.root;
    ctx(
        mount(
            Some("tofuflow"),
            root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755,size=16m"),
        ),
        || format!("mounting the new root on {}", root.display()),
    )?;
    for m in &spec.mounts {
        place(root, m)?;
    }
    pivot(root)?;
    let _ = nix::unistd::sethostname("tofuflow-task");
    relay_listeners(spec)
}

/// Puts one mount (bind, symlink, tmpfs, proc or file) under the new root.
fn place(root: &Path, m: &Mount) -> Result<(), String> {
    let none: Option<&str> = None;
    match m {
        Mount::Bind { src, dst, rw } => bind(root, src, dst, *rw)?,
        Mount::Symlink { target, dst } => {
            let t = inside(root, dst);
            mkdirs(t.parent().unwrap_or(root))?;
            ctx(std::os::unix::fs::symlink(target, &t), || {
                format!("symlink {}", dst.display())
            })?;
        }
        Mount::Tmpfs { dst, mode } => {
            let t = inside(root, dst);
            mkdirs(&t)?;
            let opts = format!("mode={mode:o},size=256m");
            ctx(
                mount(
                    Some("tmpfs"),
                    &t,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(opts.as_str()),
                ),
                || format!("tmpfs on {}", dst.display()),
            )?;
        }
        Mount::Proc { dst } => {
            let t = inside(root, dst);
            mkdirs(&t)?;
            ctx(
                mount(
                    Some("proc"),
                    &t,
                    Some("proc"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    none,
                ),
                || "mounting /proc for the task's PID namespace".into(),
            )?;
        }
        Mount::File { dst, content } => {
            let t = inside(root, dst);
            mkdirs(t.parent().unwrap_or(root))?;
            ctx(std::fs::write(&t, content), || {
                format!("writing {}", dst.display())
            })?;
        }
    }
    Ok(())
}

/// Binds `src` at `dst` under the new root: read-only unless `rw`, never setuid, devices only
/// under /dev.
fn bind(root: &Path, src: &Path, dst: &Path, rw: bool) -> Result<(), String> {
    let none: Option<&str> = None;
    let t = inside(root, dst);
    let is_dir = ctx(std::fs::metadata(src), || {
        format!("sandbox mount source {}", src.display())
    })?
    .is_dir();
    if is_dir {
        mkdirs(&t)?;
    } else {
        mkdirs(t.parent().unwrap_or(root))?;
        ctx(std::fs::write(&t, b""), || {
            format!("creating {}", t.display())
        })?;
    }
    ctx(
        mount(
            Some(src),
            &t,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        ),
        || format!("bind-mounting {} on {}", src.display(), dst.display()),
    )?;
    let mut f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID;
    if !rw {
        f |= MsFlags::MS_RDONLY;
    }
    if !dst.starts_with("/dev") {
        f |= MsFlags::MS_NODEV;
    }
    ctx(mount(none, &t, none, f, none), || {
        format!("remounting {} read-only", dst.display())
    })?;
    Ok(())
}

/// Makes `root` the root: the old one detached, the new one read-only.
fn pivot(root: &Path) -> Result<(), String> {
    let none: Option<&str> = None;
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only the
    // new root.
    ctx(nix::unistd::chdir(root), || "chdir to the new root".into())?;
    ctx(nix::unistd::pivot_root(".", "."), || "pivot_root".into())?;
    ctx(umount2(".", MntFlags::MNT_DETACH), || {
        "detaching the old root".into()
    })?;
    ctx(nix::unistd::chdir("/"), || "chdir /".into())?;
    ctx(
        mount(
            none,
            "/",
            none,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV,
            none,
        ),
        || "making the new root read-only".into(),
    )?;
    Ok(())
}

/// With a network namespace: loopback up and a listener per relay port (IPv4, and IPv6 when up).
fn relay_listeners(spec: &Spec) -> Result<Vec<(std::net::TcpListener, String)>, String> {
    let mut listeners = Vec::new();
    if spec.network_namespace {
        loopback_up()?;
        for (port, tag) in &spec.relays {
            let l = ctx(std::net::TcpListener::bind(("127.0.0.1", *port)), || {
                format!("listening on 127.0.0.1:{port} in the task's network namespace")
            })?;
            listeners.push((l, tag.clone()));
            // `localhost` may resolve to ::1 first: listen there too when IPv6 is up.
            if let Ok(l6) = std::net::TcpListener::bind(("::1", *port)) {
                listeners.push((l6, tag.clone()));
            }
        }
    }
    Ok(listeners)
}

/// `ip link set lo up` in the new network namespace.
fn loopback_up() -> Result<(), String> {
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r != 0 {
            return Err(format!("bringing up loopback: {err}"));
        }
    }
    Ok(())
}

/// Carries each connection to a listener to the agent's gateway, prefixed with its tag.
fn relay(l: std::net::TcpListener, tag: String, gateway: PathBuf) {
    for conn in l.incoming() {
        let Ok(tcp) = conn else { continue };
        // A relay forwards small writes: they go out at once (no Nagle delay).
        let _ = tcp.set_nodelay(true);
        let (tag, gateway) = (tag.clone(), gateway.clone());
        std::thread::spawn(move || {
            let Ok(mut unix) = std::os::unix::net::UnixStream::connect(&gateway) else {
                return;
            };
            if unix.write_all(format!("{tag}\n").as_bytes()).is_err() {
                return;
            }
            let (Ok(mut tcp2), Ok(mut unix2)) = (tcp.try_clone(), unix.try_clone()) else {
                return;
            };
            let up = std::thread::spawn(move || {
                let _ = std::io::copy(&mut tcp2, &mut unix2);
                let _ = unix2.shutdown(std::net::Shutdown::Write);
            });
            let mut tcp = tcp;
            let _ = std::io::copy(&mut unix, &mut tcp);
            let _ = tcp.shutdown(std::net::Shutdown::Write);
            let _ = up.join();
        });
    }
}

/// How [`exec_task`] becomes tofu.
pub(super) enum Exec<'a> {
    /// Without namespaces: the helper itself becomes tofu (it has its own session already).
    Replace,
    /// As init's child, with the helper's environment.
    InInit,
    /// Forked by a session's helper into its namespaces, with exactly this environment.
    Forked(&'a [(String, String)]),
}

/// Becomes tofu: own process group, default signals, the run user, rlimits, no_new_privs,
/// the working directory, exec. Never returns.
pub(super) fn exec_task(spec: &Spec, how: Exec<'_>) -> ! {
    let step = |what: &str, r: nix::Result<()>| {
        if let Err(e) = r {
            eprintln!("tofuflow sandbox: {what}: {e}");
            std::process::exit(SETUP_FAILED)
        }
    };
    if !matches!(how, Exec::Replace) {
        step(
            "setpgid",
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)),
        );
    }
    // Rust ignores SIGPIPE in this binary; ignored signals survive exec, so restore defaults.
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for s in Signal::iterator() {
        if !matches!(s, Signal::SIGKILL | Signal::SIGSTOP) {
            let _ = unsafe { sigaction(s, &dfl) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
    step("setrlimit", spec.limits.apply());
    if let Some((uid, gid)) = spec.user {
        step("setgroups", nix::unistd::setgroups(&[]));
        let g = Gid::from_raw(gid);
        step("setresgid", nix::unistd::setresgid(g, g, g));
        let u = Uid::from_raw(uid);
        step("setresuid", nix::unistd::setresuid(u, u, u));
    }
    if let Exec::Forked(_) = how {
        // Its helper is outside the PID namespace: when the helper is killed, tofu goes too (set
        // after the user change, which clears it). Parent 0 = the helper, outside; else it is
        // gone already and this process was handed to init.
        step("pdeathsig", nix::sys::prctl::set_pdeathsig(Signal::SIGKILL));
        if nix::unistd::getppid().as_raw() != 0 {
            std::process::exit(SETUP_FAILED)
        }
    }
    step("no_new_privs", nix::sys::prctl::set_no_new_privs());
    if spec.seccomp {
        step(
            "installing the seccomp filter",
            super::seccomp::install(&super::seccomp::program()),
        );
    }
    step("chdir", nix::unistd::chdir(&spec.cwd));
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    let Some(prog) = argv.first() else {
        eprintln!("tofuflow sandbox: nothing to run");
        std::process::exit(SETUP_FAILED)
    };
    let e = match how {
        Exec::Forked(env) => {
            let env: Vec<CString> = env
                .iter()
                .map(|(k, v)| CString::new(format!("{k}={v}")).unwrap_or_default())
                .collect();
            nix::unistd::execve(prog, &argv, &env).unwrap_err()
        }
        _ => nix::unistd::execv(prog, &argv).unwrap_err(),
    };
    eprintln!("tofuflow sandbox: cannot run {}: {e}", spec.argv[0]);
    std::process::exit(if e == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    })
}
