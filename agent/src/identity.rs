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

    /// Forgets the stored identity (it was refused: revoked or expired).
    pub fn forget(work_root: &Path) {
        let _ = std::fs::remove_file(path(work_root));
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
        };
        i.save(&dir).unwrap();
        let mode = std::fs::metadata(dir.join("identity.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Identity::load(&dir).unwrap().agent_id, "a1");
        std::fs::write(dir.join("identity.json"), "{").unwrap();
        assert!(Identity::load(&dir).is_none());
        Identity::forget(&dir);
        assert!(Identity::load(&dir).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
