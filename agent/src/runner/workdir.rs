//! The task's working directory: created fresh (0700; module, HOME and TMPDIR inside), the
//! bundle unpacked into it, the variables files (0600) and tofurc written, handed to the run
//! user, and removed afterwards unless kept.

use super::{Held, Runner};
use crate::bundle;
use crate::error::{Result, TaskError};
use crate::report::Reporter;
use crate::sandbox::{self, Sandbox};
use std::path::{Path, PathBuf};
use tofuflow_proto::v1;

/// The working directory as tofu sees it: the fixed sandbox path with namespaces, else `wd`.
pub(super) fn inner(sb: &Sandbox, wd: &Path) -> PathBuf {
    if sb.namespaces {
        sandbox::WORKDIR.into()
    } else {
        wd.to_path_buf()
    }
}

/// Removes what tasks of an earlier run of this agent left under `work_root/work` (an agent
/// that was killed never cleaned up): each task's secrets tmpfs is unmounted, and its working
/// directory removed unless `keep` (`--keep-workdirs`); and the gateway sockets under
/// `work_root/gateway`. Returns how many working directories it found.
pub fn sweep(work_root: &Path, keep: bool) -> usize {
    let mut n = 0;
    let entries = std::fs::read_dir(work_root.join("work"))
        .into_iter()
        .flatten();
    for wd in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        let secrets = wd.join(super::secrets::DIR);
        if secrets.exists() || !keep {
            n += 1;
        }
        super::secrets::remove(&secrets);
        if !keep {
            if let Err(e) = std::fs::remove_dir_all(&wd) {
                tracing::warn!(dir = %wd.display(), error = %e, "cannot remove a left-over working directory");
            }
        }
    }
    // And the gateways' sockets.
    let sockets = std::fs::read_dir(work_root.join("gateway"))
        .into_iter()
        .flatten();
    for s in sockets.flatten().map(|e| e.path()) {
        let _ = std::fs::remove_file(s);
    }
    n
}

/// Makes `wd` anew (0700, with `module/`, `home/` and `tmp/`); returns the module directory.
pub(super) fn fresh(wd: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    clear(wd)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(wd)
        .map_err(|e| {
            TaskError::workdir(
                format!("cannot create working directory {}", wd.display()),
                e,
            )
        })?;
    let module = wd.join("module");
    for d in [&module, &wd.join("home"), &wd.join("tmp")] {
        std::fs::DirBuilder::new().mode(0o700).create(d)?;
    }
    Ok(module)
}

/// Removes what is at `wd`, if anything: a crashed agent may have left a task's directory there,
/// its secrets tmpfs still mounted.
pub(super) fn clear(wd: &Path) -> Result<()> {
    if wd.exists() {
        super::secrets::remove(&wd.join(super::secrets::DIR));
        std::fs::remove_dir_all(wd).map_err(|e| {
            TaskError::workdir(
                format!("cannot clear old working directory {}", wd.display()),
                e,
            )
        })?;
    }
    Ok(())
}

/// With namespaces and a provider cache: a tofurc that makes the (read-only) cache a
/// filesystem mirror.
pub(super) fn write_tofurc(sb: &Sandbox, wd: &Path) -> Result<()> {
    if sb.namespaces && sb.plugin_cache.is_some() {
        std::fs::write(
            wd.join("tofuflow.tofurc"),
            format!("# Written by tofuflow: the agent's provider cache, read-only.\nprovider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n  direct {{}}\n}}\n", sandbox::PROVIDERS),
        )?;
    }
    Ok(())
}

/// Writes the task's variables files (0600, in its directory; values never go on a command
/// line) and returns their `-var-file=` arguments as tofu sees the paths.
pub(super) fn write_var_files(spec: &v1::TaskSpec, wd: &Path, inner: &Path) -> Result<Vec<String>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut args = Vec::with_capacity(spec.var_files.len());
    for (i, f) in spec.var_files.iter().enumerate() {
        let safe: String = f
            .name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .collect();
        let name = format!("varfile-{i}-{safe}");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(wd.join(&name))
            .and_then(|mut file| file.write_all(&f.content))
            .map_err(|e| {
                TaskError::workdir(format!("cannot write the variables file {name}"), e)
            })?;
        args.push(format!("-var-file={}", inner.join(&name).display()));
    }
    Ok(args)
}

/// Hands the working directory to the run user (no link is followed).
pub(super) fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    let (u, g) = (
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    );
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        dir,
        u,
        g,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| TaskError::workdir(format!("cannot hand {} to the run user", dir.display()), e))?;
    let rd = std::fs::read_dir(dir)?;
    for e in rd.flatten() {
        let p = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            chown_tree(&p, uid, gid)?;
        } else {
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &p,
                u,
                g,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| {
                TaskError::workdir(format!("cannot hand {} to the run user", p.display()), e)
            })?;
        }
    }
    Ok(())
}

/// Removes the working directory, or says in the log that it is kept (`--keep-workdirs`).
pub(super) fn clean_up(wd: &Path, keep: bool, rep: &Reporter) {
    if keep {
        rep.system(format!(
            "tofuflow: keeping the working directory {} (--keep-workdirs)",
            wd.display()
        ));
    } else if let Err(e) = std::fs::remove_dir_all(wd) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %wd.display(), error = %e, "cannot remove the working directory");
        }
    }
}

impl Runner {
    /// Unpacks the task's bundle into `module` and says so in the log.
    pub(super) async fn unpack_bundle(
        &self,
        spec: &v1::TaskSpec,
        lease: &Held,
        module: &Path,
        inner: &Path,
        rep: &Reporter,
    ) -> Result<()> {
        let t0 = std::time::Instant::now();
        let data = self.bundle(spec, lease).await?;
        let size = bundle::extract(&data, module, bundle::Limits::default())?;
        crate::metrics::metrics().step("bundle".into(), t0.elapsed());
        rep.system(format!(
            "tofuflow: bundle {} ({} bytes packed, {size} unpacked) in {}",
            spec.bundle_digest,
            data.len(),
            inner.join("module").display()
        ));
        Ok(())
    }

    /// The bundle from the local cache, or fetched, verified and cached.
    async fn bundle(&self, spec: &v1::TaskSpec, lease: &Held) -> Result<Vec<u8>> {
        let cache = self.cfg.work_root.join("cache");
        let file = cache.join(spec.bundle_digest.replace(':', "-"));
        if let Ok(data) = tokio::fs::read(&file).await {
            if bundle::verify(&spec.bundle_digest, &data).is_ok() {
                return Ok(data);
            }
        }
        let data = self.fetch_blob(spec, lease, &spec.bundle_digest).await?;
        tokio::fs::create_dir_all(&cache).await.map_err(|e| {
            TaskError::workdir(format!("cannot create cache {}", cache.display()), e)
        })?;
        let tmp = cache.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, &data).await?;
        tokio::fs::rename(&tmp, &file).await?;
        Ok(data)
    }
}
