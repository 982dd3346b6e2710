//! The task's secrets directory: `<workdir>/secrets`, a tmpfs of its own when the agent runs as
//! root (so a secret never touches a disk), 0700 and owned by the run user, holding the files
//! a task receives (connection files, the ID token), each 0600. Tofu sees it inside the
//! sandbox under the working directory. It is unmounted and removed when the task ends,
//! whatever happened, even with --keep-workdirs.

use crate::error::{Result, TaskError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The directory's name under the working directory.
pub const DIR: &str = "secrets";

/// The directory of one task; removed on drop.
#[derive(Debug)]
pub struct SecretsDir {
    /// Where the agent writes.
    host: PathBuf,
    /// Where tofu reads (the sandbox's working directory, or the same path without one).
    inner: PathBuf,
    owner: Option<(u32, u32)>,
    /// Whether `host` is a tmpfs mounted for this task.
    pub tmpfs: bool,
}

impl SecretsDir {
    /// Makes `<wd>/secrets` (a tmpfs when the agent may mount one), owned by `owner`.
    pub fn create(wd: &Path, inner_wd: &Path, owner: Option<(u32, u32)>) -> Result<SecretsDir> {
        let host = wd.join(DIR);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&host)
            .map_err(|e| TaskError::workdir(format!("cannot create {}", host.display()), e))?;
        let tmpfs = nix::unistd::geteuid().is_root() && mount_tmpfs(&host, owner).is_ok();
        let dir = SecretsDir {
            inner: inner_wd.join(DIR),
            host,
            owner,
            tmpfs,
        };
        dir.chown(&dir.host)?;
        Ok(dir)
    }

    /// Writes (or replaces, atomically) the file `name` (0600, the run user's); returns its
    /// path as tofu sees it.
    pub fn write(&self, name: &str, content: &[u8]) -> Result<PathBuf> {
        let tmp = self.host.join(format!(".{name}.new"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| TaskError::workdir(format!("cannot write secret file {name}"), e))?;
        f.write_all(content)?;
        f.sync_all()?;
        drop(f);
        self.chown(&tmp)?;
        std::fs::rename(&tmp, self.host.join(name))?;
        Ok(self.inner.join(name))
    }

    /// The same directory once its working directory was renamed to `wd` (a sandbox built
    /// ahead becomes its task's).
    pub fn moved_to(mut self, wd: &Path) -> SecretsDir {
        self.host = wd.join(DIR);
        self
    }

    /// The directory as the agent sees it (for replacing files while the task runs).
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// Who owns the files (the run user), for files replaced while the task runs.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    fn chown(&self, p: &Path) -> Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| TaskError::workdir(format!("cannot hand {} to the run user", p.display()), e))
    }
}

impl Drop for SecretsDir {
    fn drop(&mut self) {
        remove(&self.host);
    }
}

/// Unmounts and removes a secrets directory (also one a crashed agent left behind).
pub fn remove(dir: &Path) {
    let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the task's secrets directory");
        }
    }
}

fn mount_tmpfs(dir: &Path, owner: Option<(u32, u32)>) -> nix::Result<()> {
    use nix::mount::MsFlags;
    let mut opts = "mode=0700,size=16m".to_string();
    if let Some((u, g)) = owner {
        opts.push_str(&format!(",uid={u},gid={g}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(opts.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_replaced_whole_and_gone_with_the_directory() {
        let wd =
            std::env::temp_dir().join(format!("tofuflow-sec-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&wd).unwrap();
        let dir = SecretsDir::create(&wd, Path::new("/inner"), None).unwrap();
        let p = dir.write("TOKEN", b"first").unwrap();
        assert_eq!(p, Path::new("/inner/secrets/TOKEN"));
        dir.write("TOKEN", b"second").unwrap();
        let host = wd.join(DIR).join("TOKEN");
        assert_eq!(std::fs::read(&host).unwrap(), b"second");
        let mode = std::fs::metadata(&host).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(wd.join(DIR))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        drop(dir);
        assert!(!wd.join(DIR).exists());
        std::fs::remove_dir_all(&wd).unwrap();
    }
}
