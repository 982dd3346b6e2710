//! The sandbox every task runs in.
//!
//! - Always: its own session and process group, a cleared environment, no_new_privs, rlimits, no
//!   core dumps, the parent-death signal, and everything it started killed when it ends.
//! - When the agent runs as root: an unprivileged run user (one UID per slot), and per-task
//!   cgroups for memory and process count when the host has them.
//! - With namespaces (root, `--sandbox auto|required`): a mount namespace whose root holds only
//!   the system directories (read-only), a few files of /etc, the task's working directory at
//!   [`WORKDIR`], tofu at [`TOFU`], the provider cache read-only at [`PROVIDERS`]; a PID
//!   namespace (the task dies whole); IPC and UTS namespaces; and per pool a network mode:
//!   `egress` (the default: anywhere through the agent's proxy except the agent host's own,
//!   loopback and link-local addresses), `host`, `none` (loopback only, plus the state
//!   backend) or `allow-list` (only listed hosts through the proxy, see [`gateway`]).
//!
//! `tofuflow-agent check` prints what this host offers; the agent registers the same as labels
//! and refuses to start when its configuration needs something the host lacks.

pub mod cgroup;
pub mod gateway;
pub mod helper;
pub mod seccomp;
pub mod session;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The task's working directory inside the sandbox: the same on every agent, so a plan made on
/// one applies on another.
pub const WORKDIR: &str = "/tofuflow/run";
/// The tofu binary inside the sandbox.
pub const TOFU: &str = "/tofuflow/bin/tofu";
/// The provider cache inside the sandbox (read-only filesystem mirror).
pub const PROVIDERS: &str = "/tofuflow/providers";
/// The agent's gateway socket inside the sandbox (reachable only by the sandbox's init).
pub const GATEWAY: &str = "/run/tofuflow/gateway.sock";
/// The egress proxy's port on the task's own loopback (`egress`, `allow-list` and `none`).
pub const PROXY_PORT: u16 = 3128;

/// Resource limits for every process a task starts (0 = leave as inherited).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Limits {
    pub cpu_secs: u64,
    /// RLIMIT_AS; only when the memory limit cannot be a cgroup limit.
    pub address_space: u64,
    pub nofile: u64,
    pub fsize_bytes: u64,
    pub nproc: u64,
}

impl Limits {
    /// Sets the limits on this process (async-signal-safe: used between fork and exec). CPU:
    /// the soft limit sends SIGXCPU, the hard one 5 s later SIGKILL. Core dumps are off (a dump
    /// of tofu would hold state and credentials).
    pub fn apply(&self) -> nix::Result<()> {
        use nix::sys::resource::{setrlimit, Resource};
        setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
        if self.cpu_secs > 0 {
            setrlimit(Resource::RLIMIT_CPU, self.cpu_secs, self.cpu_secs + 5)?;
        }
        for (res, v) in [
            (Resource::RLIMIT_AS, self.address_space),
            (Resource::RLIMIT_NOFILE, self.nofile),
            (Resource::RLIMIT_FSIZE, self.fsize_bytes),
            (Resource::RLIMIT_NPROC, self.nproc),
        ] {
            if v > 0 {
                setrlimit(res, v, v)?;
            }
        }
        Ok(())
    }
}

/// One entry of the sandbox's file system, in order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Mount {
    Bind {
        src: PathBuf,
        dst: PathBuf,
        rw: bool,
    },
    Symlink {
        target: PathBuf,
        dst: PathBuf,
    },
    Tmpfs {
        dst: PathBuf,
        mode: u32,
    },
    Proc {
        dst: PathBuf,
    },
    File {
        dst: PathBuf,
        content: String,
    },
}

/// What the helper is asked to build and run (JSON on its standard input, never its command
/// line; the task's environment is the helper's own).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub namespaces: bool,
    pub network_namespace: bool,
    /// An empty host directory the new root is mounted on.
    pub root: PathBuf,
    pub mounts: Vec<Mount>,
    /// Loopback ports in the task's network namespace relayed to the gateway, with their tag.
    pub relays: Vec<(u16, String)>,
    /// The gateway socket as init sees it after pivot_root.
    pub gateway: Option<PathBuf>,
    pub user: Option<(u32, u32)>,
    pub limits: Limits,
    pub cgroup_procs: Vec<PathBuf>,
    /// Install the seccomp filter ([`seccomp`]) before exec.
    #[serde(default)]
    pub seccomp: bool,
    pub cwd: PathBuf,
    pub argv: Vec<String>,
    /// Build the namespaces and keep them for all of a task's commands: the helper announces
    /// `ready PID START` and runs nothing until it is told to end ([`session`]).
    #[serde(default)]
    pub session: bool,
    /// A session's command socket: its descriptor number in the helper ([`session`]).
    #[serde(default)]
    pub control: Option<i32>,
}

/// `--sandbox`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Namespaces when the host allows them, else process isolation only (said at start).
    Auto,
    /// Refuse to start without mount, PID, IPC and UTS namespaces and a run user.
    Required,
    /// Process isolation only: own session, cleared env, rlimits, no_new_privs.
    Off,
}

/// A pool's network mode (`--network`, `--pool-network`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    /// The default with a network namespace: anywhere through the agent's proxy, but not the
    /// agent host's own addresses (loopback included) nor link-local ones (cloud metadata).
    Egress,
    /// The host's network: tasks reach everything the host does, its loopback services too.
    Host,
    /// Loopback only; the state backend stays reachable.
    None,
    /// Only the hosts of --allow-host (and the state backend), through the agent's proxy.
    AllowList,
}

impl Network {
    pub fn name(self) -> &'static str {
        match self {
            Network::Egress => "egress",
            Network::Host => "host",
            Network::None => "none",
            Network::AllowList => "allow-list",
        }
    }
}

/// The network mode a pool's tasks get: the one set (`--network`, `--pool-network`), else
/// `egress` when the host gives tasks a network namespace and `host` when it cannot (the agent
/// warns; a mode set explicitly that needs a namespace is refused at start instead).
pub fn effective_network(set: Option<Network>, netns: bool) -> Network {
    match set {
        Some(n) => n,
        None if netns => Network::Egress,
        None => Network::Host,
    }
}

/// What this host offers.
#[derive(Clone, Debug)]
pub struct Features {
    pub root: bool,
    /// The kernel filters system calls (seccomp with filters).
    pub seccomp: bool,
    pub namespaces: Result<Duration, String>,
    pub network_namespace: Result<Duration, String>,
    pub cgroups: Result<cgroup::Cgroups, String>,
}

impl Features {
    /// Labels registered with the coordinator.
    pub fn labels(&self) -> Vec<(String, String)> {
        let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
        vec![
            (
                "sandbox".into(),
                if self.namespaces.is_ok() {
                    "namespaces"
                } else {
                    "process"
                }
                .into(),
            ),
            ("sandbox.user".into(), yes(self.root)),
            ("sandbox.seccomp".into(), yes(self.seccomp)),
            ("sandbox.netns".into(), yes(self.network_namespace.is_ok())),
            (
                "sandbox.cgroups".into(),
                match &self.cgroups {
                    Ok(cgroup::Cgroups::V1 { .. }) => "v1".into(),
                    Ok(cgroup::Cgroups::V2 { .. }) => "v2".into(),
                    Err(_) => "no".into(),
                },
            ),
        ]
    }
}

/// The system directories visible (read-only) in the sandbox.
const SYSTEM: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// Files and directories of /etc visible (read-only) in the sandbox: name resolution, TLS
/// roots, time zone, the dynamic linker, Debian's alternatives.
const ETC: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/localtime",
    "/etc/protocols",
    "/etc/services",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/crypto-policies",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
];

/// An extra bind mount (`--sandbox-bind SRC[:DST][:ro|rw]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ExtraBind {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub rw: bool,
}

pub fn parse_bind(s: &str) -> Result<ExtraBind, String> {
    let mut parts: Vec<&str> = s.split(':').collect();
    let rw = match parts.last() {
        Some(&"rw") => {
            parts.pop();
            true
        }
        Some(&"ro") => {
            parts.pop();
            false
        }
        _ => false,
    };
    let (src, dst) = match parts.as_slice() {
        [src] => (*src, *src),
        [src, dst] => (*src, *dst),
        _ => {
            return Err(format!(
                "--sandbox-bind {s:?} must look like SRC[:DST][:ro|rw]"
            ))
        }
    };
    if !src.starts_with('/') || !dst.starts_with('/') || dst.split('/').any(|c| c == "..") {
        return Err(format!(
            "--sandbox-bind {s:?}: both paths must be absolute, without '..'"
        ));
    }
    Ok(ExtraBind {
        src: src.into(),
        dst: dst.into(),
        rw,
    })
}

/// The agent's view of the sandbox, fixed at start.
#[derive(Clone, Debug)]
pub struct Sandbox {
    pub features: Features,
    /// Namespaces are used for tasks.
    pub namespaces: bool,
    /// The helper binary (this executable).
    pub helper: PathBuf,
    /// The tofu binary, resolved to an absolute path.
    pub tofu: PathBuf,
    pub root_dir: PathBuf,
    pub gateway_dir: PathBuf,
    pub plugin_cache: Option<PathBuf>,
    pub binds: Vec<ExtraBind>,
    pub run_user: Option<(u32, u32)>,
    pub cgroups: Option<cgroup::Cgroups>,
    /// Tasks get the seccomp filter.
    pub seccomp: bool,
    /// Start of this agent's task cgroup names: derived from its work root, so a restarted
    /// agent finds (and removes) what it left behind.
    pub cgroup_prefix: String,
}

/// The start of the task cgroup names of the agent whose (canonical) work root is `work_root`.
pub fn cgroup_prefix(work_root: &Path) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(work_root.as_os_str().as_encoded_bytes());
    format!("tofuflow-{}", hex::encode(&h[..4]))
}

/// Finds `bin` like a shell would.
pub fn resolve_bin(bin: &str) -> Result<PathBuf, String> {
    let found = if bin.contains('/') {
        Some(PathBuf::from(bin))
    } else {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(bin))
                .find(|c| c.is_file())
        })
    };
    found.and_then(|p| p.canonicalize().ok()).ok_or_else(|| {
        format!("the tofu binary {bin:?} was not found; install OpenTofu or pass --tofu-bin PATH")
    })
}

/// Runs the helper for `spec` (given on its standard input) with exactly `env`, and waits for it
/// (the probe and the benchmark; tasks use `runner::process`).
pub fn run_helper(
    helper: &Path,
    spec: &Spec,
    env: &[(&str, &str)],
) -> std::io::Result<std::process::Output> {
    use std::io::Write;
    let json = serde_json::to_vec(spec).map_err(std::io::Error::other)?;
    let mut child = std::process::Command::new(helper)
        .arg("__sandbox")
        .env_clear()
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let written = child.stdin.take().map(|mut i| i.write_all(&json));
    let out = child.wait_with_output()?;
    match written {
        Some(Err(e)) if out.status.success() => Err(e),
        _ => Ok(out),
    }
}

/// The kernel supports seccomp filters (`Seccomp:` in /proc/self/status).
fn seccomp_supported() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
        .unwrap_or(false)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The user tasks of `slot` run as: `--run-user auto` gives root agents one UID per slot,
/// from `base` (`--run-uid-base`).
pub fn run_user(setting: &str, base: u32, slot: u32) -> Result<Option<(u32, u32)>, String> {
    match setting {
        "auto" => Ok(is_root().then_some((base + slot, base + slot))),
        "agent" => Ok(None),
        s => {
            let (u, g) = s.split_once(':').unwrap_or((s, s));
            let uid = match u.parse::<u32>() {
                Ok(n) => n,
                Err(_) => nix::unistd::User::from_name(u)
                    .ok()
                    .flatten()
                    .map(|x| x.uid.as_raw())
                    .ok_or_else(|| format!("--run-user {s:?}: no such user"))?,
            };
            let gid = g
                .parse::<u32>()
                .map_err(|_| format!("--run-user {s:?}: the group must be numeric (UID[:GID])"))?;
            if uid == 0 {
                return Err(
                    "--run-user must not be root (use `agent` to keep the agent's user)".into(),
                );
            }
            if !is_root() {
                return Err("--run-user needs an agent running as root".into());
            }
            Ok(Some((uid, gid)))
        }
    }
}

/// The host's system directories (read-only), the files of /etc tasks need, and a passwd and
/// group naming the run user.
fn system_mounts(user: Option<(u32, u32)>) -> Vec<Mount> {
    let mut m = Vec::new();
    let ro = |p: &str| Mount::Bind {
        src: p.into(),
        dst: p.into(),
        rw: false,
    };
    for d in SYSTEM {
        match std::fs::symlink_metadata(d) {
            Ok(md) if md.file_type().is_symlink() => {
                if let Ok(t) = std::fs::read_link(d) {
                    m.push(Mount::Symlink {
                        target: t,
                        dst: d.into(),
                    });
                }
            }
            Ok(md) if md.is_dir() => m.push(ro(d)),
            _ => {}
        }
    }
    for f in ETC {
        if Path::new(f).exists() {
            m.push(ro(f));
        }
    }
    let (uid, gid) = user.unwrap_or((65534, 65534));
    m.push(Mount::File {
        dst: "/etc/passwd".into(),
        content: format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\ntofu:x:{uid}:{gid}:tofuflow task:{WORKDIR}/home:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
    });
    m.push(Mount::File {
        dst: "/etc/group".into(),
        content: format!("root:x:0:\ntofu:x:{gid}:\nnogroup:x:65534:\n"),
    });
    m
}

/// A private /dev (a few devices, the fd links, its own shm), /proc of the task's PID namespace
/// and a /tmp of its own.
fn device_mounts() -> Vec<Mount> {
    let mut m = Vec::new();
    m.push(Mount::Tmpfs {
        dst: "/dev".into(),
        mode: 0o755,
    });
    for d in ["null", "zero", "full", "random", "urandom"] {
        m.push(Mount::Bind {
            src: format!("/dev/{d}").into(),
            dst: format!("/dev/{d}").into(),
            rw: true,
        });
    }
    for (l, t) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        m.push(Mount::Symlink {
            target: t.into(),
            dst: format!("/dev/{l}").into(),
        });
    }
    m.push(Mount::Tmpfs {
        dst: "/dev/shm".into(),
        mode: 0o1777,
    });
    m.push(Mount::Proc {
        dst: "/proc".into(),
    });
    m.push(Mount::Tmpfs {
        dst: "/tmp".into(),
        mode: 0o1777,
    });
    m
}

impl Sandbox {
    /// Detects what the host offers and checks it against the configuration: an error names
    /// what is missing and what to do.
    pub fn new(cfg: &crate::Config) -> Result<Sandbox, String> {
        let helper = std::env::current_exe()
            .map_err(|e| format!("cannot find the agent's own executable: {e}"))?;
        Sandbox::with_helper(cfg, helper)
    }

    /// As [`Sandbox::new`], with the helper binary given (the benchmark, which is not the agent).
    pub fn with_helper(cfg: &crate::Config, helper: PathBuf) -> Result<Sandbox, String> {
        let tofu = resolve_bin(&cfg.tofu_bin)?;
        let root_dir = cfg.work_root.join("root");
        let gateway_dir = cfg.work_root.join("gateway");
        for d in [&root_dir, &gateway_dir] {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let plugin_cache = match &cfg.plugin_cache_dir {
            Some(p) => Some(
                p.canonicalize()
                    .map_err(|e| format!("--plugin-cache-dir {}: {e}", p.display()))?,
            ),
            None => None,
        };
        for b in &cfg.sandbox_binds {
            if !b.src.exists() {
                return Err(format!(
                    "--sandbox-bind {}: no such file or directory on this host",
                    b.src.display()
                ));
            }
        }
        let root = is_root();
        let mut sb = Sandbox {
            features: Features {
                root,
                seccomp: seccomp_supported(),
                namespaces: Err("not probed".into()),
                network_namespace: Err("not probed".into()),
                cgroups: Err("not probed".into()),
            },
            namespaces: false,
            helper,
            tofu,
            root_dir,
            gateway_dir,
            plugin_cache,
            binds: cfg.sandbox_binds.clone(),
            run_user: run_user(&cfg.run_user, cfg.run_uid_base, 0)?,
            cgroups: None,
            seccomp: false,
            cgroup_prefix: cgroup_prefix(&cfg.work_root),
        };
        sb.seccomp = cfg.sandbox != Mode::Off && sb.features.seccomp;
        if cfg.sandbox == Mode::Off {
            sb.features.namespaces = Err("--sandbox off".into());
            sb.features.network_namespace = Err("--sandbox off".into());
            sb.features.cgroups = Err("--sandbox off".into());
        } else {
            sb.features.cgroups = if root {
                cgroup::Cgroups::detect()
            } else {
                Err("the agent does not run as root".into())
            };
            sb.features.namespaces = sb.probe(false);
            sb.features.network_namespace = match &sb.features.namespaces {
                Ok(_) => sb.probe(true),
                Err(e) => Err(e.clone()),
            };
        }
        sb.cgroups = sb.features.cgroups.clone().ok();
        sb.namespaces = sb.features.namespaces.is_ok();
        Ok(sb)
    }

    /// What the configuration requires that this host lacks, as an error naming it and what
    /// to do; `None` when the agent may start.
    pub fn unmet(&self, cfg: &crate::Config) -> Option<String> {
        let sb = self;
        let root = sb.features.root;
        let needs_netns: Vec<String> = cfg
            .pools
            .iter()
            .filter_map(|p| match cfg.network_setting(p) {
                Some(n) if n != Network::Host => Some(format!("{p} ({})", n.name())),
                _ => None,
            })
            .collect();
        let mut missing = Vec::new();
        if cfg.sandbox == Mode::Required {
            if let Err(e) = &sb.features.namespaces {
                missing.push(format!("namespaces ({e})"));
            }
            if !root {
                missing.push("a run user (the agent must run as root to switch users)".into());
            }
        }
        if !needs_netns.is_empty() {
            if let Err(e) = &sb.features.network_namespace {
                missing.push(format!(
                    "a network namespace for pools {} ({e})",
                    needs_netns.join(", ")
                ));
            }
        }
        (!missing.is_empty()).then(|| format!(
            "this host cannot give tasks the isolation the configuration requires: missing {}. Run `tofuflow-agent check` for details; run the agent as root on a host with namespaces, or relax --sandbox / --network",
            missing.join("; ")
        ))
    }

    /// The network mode tasks of `pool` get on this host ([`effective_network`]).
    pub fn network_for(&self, cfg: &crate::Config, pool: &str) -> Network {
        effective_network(
            cfg.network_setting(pool),
            self.features.network_namespace.is_ok(),
        )
    }

    /// Why tasks of `pool` can reach this host's loopback services, when they can: `host` was
    /// asked for, or is all this host can give (the default `egress` needs a network namespace).
    pub fn host_network_risk(&self, cfg: &crate::Config, pool: &str) -> Option<String> {
        if self.network_for(cfg, pool) != Network::Host {
            return None;
        }
        Some(match (cfg.network_setting(pool), &self.features.network_namespace) {
            (Some(_), _) | (None, Ok(_)) => "tasks can reach this host's loopback services (RabbitMQ, databases, the coordinator) and cloud metadata: the network mode is host".to_string(),
            (None, Err(e)) => format!("tasks can reach this host's loopback services (RabbitMQ, databases, the coordinator) and cloud metadata: the default network mode egress needs a network namespace ({e}), so tasks use the host network; run the agent as root on a host with namespaces to get egress"),
        })
    }

    /// Runs `tofu version` through a full sandbox: proves it works here and measures its cost.
    fn probe(&self, network: bool) -> Result<Duration, String> {
        let dir = self
            .root_dir
            .parent()
            .unwrap_or(Path::new("/"))
            .join(format!("probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut spec = self.spec(
            &dir,
            None,
            network,
            self.run_user,
            Limits::default(),
            vec![],
        );
        spec.namespaces = true;
        spec.mounts = self.mounts(&dir, None, self.run_user);
        spec.argv = vec![TOFU.into(), "version".into()];
        spec.cwd = WORKDIR.into();
        let t = Instant::now();
        let out = run_helper(&self.helper, &spec, &[("PATH", "/usr/bin:/bin")]);
        let took = t.elapsed();
        let _ = std::fs::remove_dir_all(&dir);
        let out = out.map_err(|e| format!("cannot start the sandbox helper: {e}"))?;
        if out.status.success() {
            Ok(took)
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err
                .lines()
                .find(|l| l.starts_with("tofuflow sandbox:"))
                .map(|l| l.trim_start_matches("tofuflow sandbox: ").to_string())
                .unwrap_or_else(|| format!("the probe failed ({}): {}", out.status, err.trim())))
        }
    }

    /// The sandbox's file system for a task whose working directory is `wd`.
    fn mounts(&self, wd: &Path, gateway: Option<&Path>, user: Option<(u32, u32)>) -> Vec<Mount> {
        let mut m = system_mounts(user);
        m.extend(device_mounts());
        m.extend(self.task_mounts(wd, gateway));
        m
    }

    /// The task's own paths: its working directory, tofu, the provider cache, the gateway and
    /// the extra `--sandbox-bind`s.
    fn task_mounts(&self, wd: &Path, gateway: Option<&Path>) -> Vec<Mount> {
        let mut m = Vec::new();
        m.push(Mount::Bind {
            src: wd.into(),
            dst: WORKDIR.into(),
            rw: true,
        });
        m.push(Mount::Bind {
            src: self.tofu.clone(),
            dst: TOFU.into(),
            rw: false,
        });
        if let Some(c) = &self.plugin_cache {
            m.push(Mount::Bind {
                src: c.clone(),
                dst: PROVIDERS.into(),
                rw: false,
            });
        }
        if let Some(g) = gateway {
            m.push(Mount::Bind {
                src: g.into(),
                dst: GATEWAY.into(),
                rw: true,
            });
        }
        for b in &self.binds {
            m.push(Mount::Bind {
                src: b.src.clone(),
                dst: b.dst.clone(),
                rw: b.rw,
            });
        }
        m
    }

    /// The helper's spec for a task (argv and cwd are filled per command).
    pub fn spec(
        &self,
        wd: &Path,
        gateway: Option<(&Path, Vec<(u16, String)>)>,
        network: bool,
        user: Option<(u32, u32)>,
        limits: Limits,
        cgroup_procs: Vec<PathBuf>,
    ) -> Spec {
        let (gw, relays) = match gateway {
            Some((p, r)) => (Some(p), r),
            None => (None, vec![]),
        };
        Spec {
            namespaces: self.namespaces,
            network_namespace: network,
            root: self.root_dir.clone(),
            mounts: if self.namespaces || network {
                self.mounts(wd, gw, user)
            } else {
                vec![]
            },
            relays,
            gateway: gw.map(|_| PathBuf::from(GATEWAY)),
            user,
            limits,
            cgroup_procs,
            seccomp: self.seccomp,
            cwd: wd.into(),
            argv: vec![],
            session: false,
            control: None,
        }
    }

    /// `tofuflow-agent check`: what this host offers and what the configuration gets.
    pub fn report(&self, cfg: &crate::Config) -> String {
        let f = &self.features;
        let ok = |r: &Result<Duration, String>| match r {
            Ok(d) => format!(
                "yes (a sandboxed `tofu version` took {:.1} ms)",
                d.as_secs_f64() * 1e3
            ),
            Err(e) => format!("no: {e}"),
        };
        let mut s = String::new();
        let mut line = |k: &str, v: String| s.push_str(&format!("{k:<28} {v}\n"));
        line("tofu", self.tofu.display().to_string());
        line("sandbox mode", format!("{:?}", cfg.sandbox).to_lowercase());
        line(
            "process isolation",
            "yes (own session, cleared environment, no_new_privs, rlimits, no core dumps, parent-death signal)".into(),
        );
        line("run user", self.run_user_report(cfg));
        line("seccomp filter", self.seccomp_report());
        line("mount+pid+ipc+uts namespaces", ok(&f.namespaces));
        line("network namespace", ok(&f.network_namespace));
        line(
            "cgroups",
            match &f.cgroups {
                Ok(c) => format!("yes: {}", c.describe()),
                Err(e) => format!("no: {e}"),
            },
        );
        line("memory limit", self.memory_report(cfg));
        line("process limit", self.nproc_report(cfg));
        for p in &cfg.pools {
            let n = self.network_for(cfg, p);
            line(
                &format!("network of pool {p}"),
                match (n, cfg.network_setting(p)) {
                    (Network::Egress, None) => "egress (the default: anywhere but this host's own and link-local addresses, through the agent's proxy)".into(),
                    (n, _) => n.name().into(),
                },
            );
            if let Some(risk) = self.host_network_risk(cfg, p) {
                line("warning", format!("pool {p}: {risk}"));
            }
        }
        if !cfg.allow_hosts.is_empty() {
            line("allow-list", cfg.allow_hosts.join(", "));
        }
        s
    }

    /// The `run user` line of the report.
    fn run_user_report(&self, cfg: &crate::Config) -> String {
        let f = &self.features;
        match self.run_user {
            Some((u, g)) if cfg.run_user == "auto" => format!(
                "yes (UID {u}+slot, GID {g}+slot; --run-uid-base {})",
                cfg.run_uid_base
            ),
            Some((u, g)) => format!(
                "yes (UID {u}, GID {g} for every slot; --run-user {})",
                cfg.run_user
            ),
            None if f.root => "no: --run-user agent keeps tasks as root".into(),
            None => "no: the agent does not run as root (tasks run as the agent's user)".into(),
        }
    }

    /// The `seccomp filter` line of the report.
    fn seccomp_report(&self) -> String {
        let f = &self.features;
        match (self.seccomp, f.seccomp) {
            (true, _) => {
                "yes (ptrace, namespaces, mounts, modules, bpf, keyring, … refused)".into()
            }
            (false, true) => "no: --sandbox off".into(),
            (false, false) => "no: this kernel has no seccomp filters".into(),
        }
    }

    /// The `memory limit` line of the report.
    fn memory_report(&self, cfg: &crate::Config) -> String {
        match (
            cfg.limit_memory,
            self.cgroups.as_ref().is_some_and(|c| c.memory()),
        ) {
            (0, _) => "none (--limit-memory)".into(),
            (n, true) => format!("{n} bytes for the whole task (cgroup)"),
            (n, false) => {
                format!("{n} bytes of address space per process (RLIMIT_AS; no memory cgroup)")
            }
        }
    }

    /// The `process limit` line of the report.
    fn nproc_report(&self, cfg: &crate::Config) -> String {
        match (
            cfg.limit_nproc,
            self.cgroups.as_ref().is_some_and(|c| c.pids()),
        ) {
            (0, _) => "none (--limit-nproc)".into(),
            (n, true) => {
                format!("{n} for the whole task (cgroup) and per run user (RLIMIT_NPROC)")
            }
            (n, false) => format!("{n} per run user (RLIMIT_NPROC)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_network_is_egress_where_the_host_has_network_namespaces() {
        assert_eq!(effective_network(None, true), Network::Egress);
        assert_eq!(effective_network(None, false), Network::Host);
        for n in [
            Network::Egress,
            Network::Host,
            Network::None,
            Network::AllowList,
        ] {
            assert_eq!(effective_network(Some(n), true), n);
            assert_eq!(effective_network(Some(n), false), n);
        }
    }

    #[test]
    fn binds_parse() {
        assert_eq!(
            parse_bind("/a").unwrap(),
            ExtraBind {
                src: "/a".into(),
                dst: "/a".into(),
                rw: false
            }
        );
        assert_eq!(
            parse_bind("/a:/b:rw").unwrap(),
            ExtraBind {
                src: "/a".into(),
                dst: "/b".into(),
                rw: true
            }
        );
        assert!(parse_bind("a:/b").is_err());
        assert!(parse_bind("/a:/b/../etc").is_err());
        assert!(parse_bind("/a:/b:/c:/d").is_err());
    }
}
