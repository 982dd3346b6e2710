//! The checks a state write must pass that OpenTofu's `http` client never makes itself, as pure
//! functions: the lock it writes under, and lineage and serial moving forward.

use crate::error::{Error, Result};

/// The workspace's lock as a write sees it.
pub struct HeldLock {
    pub lock_id: String,
    pub task_id: String,
    pub epoch: i64,
}

/// Whether a write by (`task_id`, `epoch`) carrying `lock_id` may go ahead under `held`.
pub fn check_write_lock(
    workspace: &str,
    held: Option<&HeldLock>,
    lock_id: Option<&str>,
    task_id: &str,
    epoch: i64,
) -> Result<()> {
    match (held, lock_id) {
        (Some(l), _) if lock_id != Some(l.lock_id.as_str()) || l.task_id != task_id || l.epoch != epoch => {
            Err(Error::Conflict(format!(
                "state of workspace {workspace:?} is locked with ID {}; this write carries {} and is rejected",
                l.lock_id,
                lock_id.map(|x| format!("ID {x}")).unwrap_or_else(|| "no lock ID".into())
            )))
        }
        (None, Some(id)) => Err(Error::Conflict(format!("write with lock ID {id} rejected: workspace {workspace:?} is not locked (the lock was released or fenced)"))),
        _ => Ok(()),
    }
}

/// The newest stored version of a workspace.
pub struct Current {
    pub version: i64,
    pub serial: i64,
    pub lineage: String,
    pub sha256: String,
    /// A deletion (tombstone): the next write starts a new state.
    pub deleted: bool,
}

/// What a write becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// A new version with this number.
    New(i64),
    /// An identical retry of this version: nothing is stored.
    Same(i64),
}

/// Decides a write of (`serial`, `lineage`, `sha256`) over `cur`: same lineage, a higher serial
/// (an identical retry is accepted without a new version).
pub fn next_version(
    workspace: &str,
    cur: Option<&Current>,
    serial: i64,
    lineage: &str,
    sha256: &str,
) -> Result<Written> {
    let Some(c) = cur else {
        return Ok(Written::New(1));
    };
    if c.deleted {
        return Ok(Written::New(c.version + 1));
    }
    if c.lineage != lineage {
        return Err(Error::Conflict(format!(
            "lineage mismatch: workspace {workspace:?} holds lineage {}, the write has {lineage}",
            c.lineage
        )));
    }
    if serial < c.serial {
        return Err(Error::Conflict(format!(
            "stale serial: workspace {workspace:?} is at serial {}, the write has {serial}",
            c.serial
        )));
    }
    if serial == c.serial {
        if c.sha256 == sha256 {
            return Ok(Written::Same(c.version));
        }
        return Err(Error::Conflict(format!(
            "serial {serial} already stored with different content for workspace {workspace:?}"
        )));
    }
    Ok(Written::New(c.version + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(serial: i64, deleted: bool) -> Current {
        Current {
            version: 3,
            serial,
            lineage: "L".into(),
            sha256: "abc".into(),
            deleted,
        }
    }

    #[test]
    fn serials_move_forward_in_one_lineage() {
        assert_eq!(
            next_version("w", None, 1, "L", "x").unwrap(),
            Written::New(1)
        );
        assert_eq!(
            next_version("w", Some(&cur(5, false)), 6, "L", "x").unwrap(),
            Written::New(4)
        );
        assert_eq!(
            next_version("w", Some(&cur(5, false)), 5, "L", "abc").unwrap(),
            Written::Same(3)
        );
        for (serial, lineage, sha, what) in [
            (5, "L", "zzz", "different content"),
            (4, "L", "x", "stale serial"),
            (6, "M", "x", "lineage mismatch"),
        ] {
            let e = next_version("w", Some(&cur(5, false)), serial, lineage, sha).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        }
        assert_eq!(
            next_version("w", Some(&cur(5, true)), 1, "M", "x").unwrap(),
            Written::New(4),
            "a new state after a deletion"
        );
    }

    #[test]
    fn writes_carry_the_lock_they_hold() {
        let l = HeldLock {
            lock_id: "A".into(),
            task_id: "t".into(),
            epoch: 7,
        };
        assert!(check_write_lock("w", Some(&l), Some("A"), "t", 7).is_ok());
        assert!(check_write_lock("w", Some(&l), Some("B"), "t", 7).is_err());
        assert!(check_write_lock("w", Some(&l), None, "t", 7).is_err());
        assert!(
            check_write_lock("w", Some(&l), Some("A"), "t", 8).is_err(),
            "a fenced epoch"
        );
        assert!(check_write_lock("w", None, Some("A"), "t", 7)
            .unwrap_err()
            .to_string()
            .contains("not locked"));
        assert!(check_write_lock("w", None, None, "t", 7).is_ok());
    }
}
