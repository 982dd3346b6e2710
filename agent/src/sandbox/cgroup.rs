//! Per-task cgroups for the memory and process-count limits of the whole task (all of its
//! processes together), and for telling afterwards which limit was hit.
//!
//! cgroup v1 (separate `memory` and `pids` hierarchies) and v2 (unified) are both supported. On
//! v2 the agent's cgroup must be delegated to it (systemd `Delegate=yes`): if it holds processes,
//! the agent moves itself into a `agent` leaf first so that task cgroups can be its siblings.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub enum Cgroups {
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
    V2 {
        base: PathBuf,
        memory: bool,
        pids: bool,
    },
}

/// What a finished task's cgroup recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Hits {
    pub oom_kills: u64,
    pub pids_max: u64,
}

fn mounts() -> Vec<(String, PathBuf, String)> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[2].to_string(), PathBuf::from(f[1]), f[3].to_string()))
        })
        .collect()
}

/// The agent's own cgroup path for a v1 controller (or "" for v2).
fn own_path(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
        (ctrls.split(',').any(|c| c == controller)).then(|| path.to_string())
    })
}

fn writable_base(mount: &Path, rel: &str) -> Option<PathBuf> {
    let full = mount.join(rel.trim_start_matches('/'));
    // Inside a container the recorded path may not exist under the mount: then the mount's
    // root is ours.
    let base = if full.is_dir() {
        full
    } else {
        mount.to_path_buf()
    };
    let probe = base.join(format!("tofuflow-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(base)
}

impl Cgroups {
    /// Finds cgroups this process may create children in, or says why not.
    pub fn detect() -> Result<Cgroups, String> {
        let ms = mounts();
        let v1 = |ctrl: &str| {
            ms.iter()
                .find(|(fs, _, opts)| fs == "cgroup" && opts.split(',').any(|o| o == ctrl))
                .and_then(|(_, mnt, _)| writable_base(mnt, &own_path(ctrl).unwrap_or_default()))
        };
        let (memory, pids) = (v1("memory"), v1("pids"));
        if memory.is_some() || pids.is_some() {
            return Ok(Cgroups::V1 { memory, pids });
        }
        let Some((_, mnt, _)) = ms.iter().find(|(fs, _, _)| fs == "cgroup2") else {
            return Err("no cgroup file system is mounted".into());
        };
        let rel = own_path("").unwrap_or_default();
        let base = mnt.join(rel.trim_start_matches('/'));
        let avail = std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| avail.split_whitespace().any(|x| x == c);
        if !has("memory") && !has("pids") {
            return Err(format!(
                "cgroup v2 at {} has no memory or pids controller delegated to the agent",
                base.display()
            ));
        }
        let want: Vec<&str> = ["memory", "pids"].into_iter().filter(|c| has(c)).collect();
        let enable = want
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        let ctl = base.join("cgroup.subtree_control");
        if std::fs::write(&ctl, &enable).is_err() {
            // "No internal processes": move this process into a leaf, then enable.
            let leaf = base.join("agent");
            let _ = std::fs::create_dir(&leaf);
            let procs = std::fs::read_to_string(base.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(leaf.join("cgroup.procs"), pid);
            }
            std::fs::write(&ctl, &enable)
                .map_err(|e| format!("cannot enable {enable} in {}: {e}", ctl.display()))?;
        }
        Ok(Cgroups::V2 {
            base,
            memory: has("memory"),
            pids: has("pids"),
        })
    }

    fn bases(&self) -> Vec<PathBuf> {
        match self {
            Cgroups::V1 { memory, pids } => memory.iter().chain(pids.iter()).cloned().collect(),
            Cgroups::V2 { base, .. } => vec![base.clone()],
        }
    }

    /// Removes task cgroups named `prefix…` that an earlier run of this agent left behind
    /// (killed before it could remove them), killing anything still in them. Returns how many.
    pub fn sweep(&self, prefix: &str) -> usize {
        let mut n = 0;
        for base in self.bases() {
            for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(prefix) && e.path().is_dir() {
                    empty_and_remove(&e.path());
                    n += 1;
                }
            }
        }
        n
    }

    pub fn describe(&self) -> String {
        match self {
            Cgroups::V1 { memory, pids } => format!(
                "v1 (memory: {}, pids: {})",
                memory
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or("no".into()),
                pids.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or("no".into())
            ),
            Cgroups::V2 { base, memory, pids } => format!(
                "v2 at {} (memory: {}, pids: {})",
                base.display(),
                if *memory { "yes" } else { "no" },
                if *pids { "yes" } else { "no" }
            ),
        }
    }

    pub fn memory(&self) -> bool {
        matches!(
            self,
            Cgroups::V1 {
                memory: Some(_),
                ..
            } | Cgroups::V2 { memory: true, .. }
        )
    }

    pub fn pids(&self) -> bool {
        matches!(
            self,
            Cgroups::V1 { pids: Some(_), .. } | Cgroups::V2 { pids: true, .. }
        )
    }

    /// Creates the cgroup(s) of one task with its limits (0 = none).
    pub fn create(&self, name: &str, memory: u64, pids: u64) -> Result<TaskCgroup, String> {
        let mk = |dir: PathBuf| -> Result<PathBuf, String> {
            match std::fs::create_dir(&dir) {
                Ok(()) => Ok(dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir),
                Err(e) => Err(format!("cannot create cgroup {}: {e}", dir.display())),
            }
        };
        let set = |dir: &Path, file: &str, v: u64| -> Result<(), String> {
            std::fs::write(dir.join(file), v.to_string())
                .map_err(|e| format!("cannot set {file} of {}: {e}", dir.display()))
        };
        let cg = match self {
            Cgroups::V1 { memory: m, pids: p } => {
                // Only the hierarchies with a limit to enforce (joining each one costs time).
                let mem = m
                    .as_ref()
                    .filter(|_| memory > 0)
                    .map(|b| mk(b.join(name)))
                    .transpose()?;
                let pid = p
                    .as_ref()
                    .filter(|_| pids > 0)
                    .map(|b| mk(b.join(name)))
                    .transpose()?;
                if let (Some(d), true) = (&mem, memory > 0) {
                    set(d, "memory.limit_in_bytes", memory)?;
                    // No escape into swap (where the kernel offers the knob).
                    if d.join("memory.memsw.limit_in_bytes").exists() {
                        let _ = set(d, "memory.memsw.limit_in_bytes", memory);
                    }
                }
                if let (Some(d), true) = (&pid, pids > 0) {
                    set(d, "pids.max", pids)?;
                }
                TaskCgroup {
                    v2: false,
                    memory: mem,
                    pids: pid,
                }
            }
            Cgroups::V2 {
                base,
                memory: m,
                pids: p,
            } => {
                let d = mk(base.join(name))?;
                if *m && memory > 0 {
                    set(&d, "memory.max", memory)?;
                    let _ = set(&d, "memory.swap.max", 0);
                }
                if *p && pids > 0 {
                    set(&d, "pids.max", pids)?;
                }
                TaskCgroup {
                    v2: true,
                    memory: Some(d.clone()),
                    pids: Some(d),
                }
            }
        };
        Ok(cg)
    }
}

/// The cgroup(s) of one running task; removed by [`TaskCgroup::destroy`].
#[derive(Debug)]
pub struct TaskCgroup {
    v2: bool,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
}

fn counter(file: &Path, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

impl TaskCgroup {
    fn dirs(&self) -> Vec<&PathBuf> {
        let mut d: Vec<&PathBuf> = self.memory.iter().chain(self.pids.iter()).collect();
        d.dedup();
        d
    }

    /// The `cgroup.procs` files the sandbox helper writes its PID into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    pub fn hits(&self) -> Hits {
        let oom_kills = self
            .memory
            .as_ref()
            .map(|d| {
                if self.v2 {
                    counter(&d.join("memory.events"), "oom_kill")
                } else {
                    counter(&d.join("memory.oom_control"), "oom_kill")
                }
            })
            .unwrap_or(0);
        let pids_max = self
            .pids
            .as_ref()
            .map(|d| counter(&d.join("pids.events"), "max"))
            .unwrap_or(0);
        Hits {
            oom_kills,
            pids_max,
        }
    }

    /// Kills whatever is left in the cgroup and removes it.
    pub fn destroy(&self) {
        // First no new process anywhere in it (a pids limit of 0; on v2 `cgroup.kill` also
        // kills them all at once), so a fork bomb cannot refill what the loop below kills.
        for d in self.dirs() {
            let _ = std::fs::write(d.join("pids.max"), "0");
            let _ = std::fs::write(d.join("cgroup.kill"), "1");
        }
        for d in self.dirs() {
            empty_and_remove(d);
        }
    }
}

/// Kills whatever is in the cgroup directory `d` and removes it.
fn empty_and_remove(d: &Path) {
    for _ in 0..50 {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for p in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // (A release agent may have removed it already.)
    if let Err(e) = std::fs::remove_dir(d).or_else(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(e),
    }) {
        tracing::warn!(cgroup = %d.display(), error = %e, "cannot remove a task cgroup");
    }
}
