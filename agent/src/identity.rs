//! The agent's own identity: the id and secret the coordinator gave it for its join token,
//! kept in `<work_root>/identity.json` (mode 0600) so a restarted agent comes back as itself
//! without needing the (short-lived) join token again.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An identity the coordinator issued.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Identity {
    pub agent_id: String,
    pub secret: String,
    /// When it stops working unless a heartbeat renews it (0: never).
    pub expires_ms: i64,
    /// When the coordinator said it was revoked (0: it did not): the agent then refuses to
    /// start until an operator deletes the file, so a restart does not join again by itself.
    #[serde(default)]
    pub revoked_ms: i64,
}

fn path(work_root: &Path) -> PathBuf {
    work_root.join("identity.json")
}

impl Identity {
    /// The stored identity, if there is a readable one (a damaged file is ignored, with a
    /// warning: the agent joins afresh).
    pub fn load(work_root: &Path) -> Option<Identity> {
        let p = path(work_root);
        let text = std::fs::read_to_string(&p).ok()?;
        match serde_json::from_str(&text) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "ignoring a damaged identity file");
                None
            }
        }
    }

    /// Stores the identity, readable by this user only, replacing any older one whole.
    pub fn save(&self, work_root: &Path) -> Result<(), String> {
        let p = path(work_root);
        let tmp = p.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let body = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&tmp, &p)
        };
        write().map_err(|e| format!("cannot store the agent identity in {}: {e}", p.display()))
    }

    /// Forgets the stored identity (it was refused, e.g. expired).
    pub fn forget(work_root: &Path) {
        let _ = std::fs::remove_file(path(work_root));
    }

    /// Marks the stored identity revoked (at `now_ms`).
    pub fn mark_revoked(work_root: &Path, now_ms: i64) -> Result<(), String> {
        match Identity::load(work_root) {
            Some(mut i) => {
                i.revoked_ms = now_ms;
                i.save(work_root)
            }
            None => Ok(()),
        }
    }

    /// The stored identity to join with, if any; refuses to go on when it was revoked.
    pub fn usable(work_root: &Path) -> Result<Option<Identity>, String> {
        match Identity::load(work_root) {
            Some(i) if i.revoked_ms > 0 => Err(format!(
                "agent {} was revoked by an admin of the coordinator: it does not start again by itself; to let this host serve again, delete {} and start it with a new join token",
                i.agent_id,
                path(work_root).display()
            )),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_identity_is_private_and_comes_back() {
        let dir = std::env::temp_dir().join(format!("tofuflow-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let i = Identity {
            agent_id: "a1".into(),
            secret: "s".into(),
            expires_ms: 5,
            revoked_ms: 0,
        };
        i.save(&dir).unwrap();
        let mode = std::fs::metadata(dir.join("identity.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Identity::load(&dir).unwrap().agent_id, "a1");
        assert!(Identity::usable(&dir).unwrap().is_some());
        Identity::mark_revoked(&dir, 7).unwrap();
        let e = Identity::usable(&dir).unwrap_err();
        assert!(
            e.contains("agent a1 was revoked") && e.contains("identity.json"),
            "{e}"
        );
        std::fs::write(dir.join("identity.json"), "{").unwrap();
        assert!(Identity::load(&dir).is_none());
        Identity::forget(&dir);
        assert!(Identity::load(&dir).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
