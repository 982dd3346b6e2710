//! Why a task failed, by phase: the errors of the runner, the bundle and the tofu commands. Their
//! text is what a run's error and log show users, so it says what happened and where to look next.

use std::io;

/// The agent's result for everything on a task's path.
pub type Result<T, E = TaskError> = std::result::Result<T, E>;

/// A boxed source error, shown as it shows itself.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

/// Why a task could not run to its end. The text is the run's error as users see it.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task cannot run on this agent as specified or configured (network mode, run user,
    /// a phase or plan the spec lacks).
    #[error("{0}")]
    Setup(String),
    /// A step on the working directory (creating, clearing, writing a file, handing it to the
    /// run user) failed; `what` names the step and the path.
    #[error("{what}: {source}")]
    Workdir {
        what: String,
        #[source]
        source: Source,
    },
    /// A file system step without more to say than the system's own message.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The bundle (or saved plan) is not what the coordinator named, or its archive is refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The coordinator did not hand out a blob (bundle or plan); `code` says whether another
    /// coordinator may (`Unavailable`).
    #[error("cannot fetch {digest}: {message}")]
    Fetch {
        digest: String,
        message: String,
        code: tonic::Code,
    },
    /// The coordinator's stream of a blob broke off.
    #[error("fetching {digest} failed: {message}")]
    FetchBroken {
        digest: String,
        message: String,
        code: tonic::Code,
    },
    /// An artifact (plan file, plan JSON) could not be uploaded.
    #[error("uploading the {kind} failed: {message}")]
    Upload { kind: String, message: String },
    /// The gateway of an isolated network (proxy, backend relay) could not be started.
    #[error("{0}")]
    Egress(String),
    /// The sandbox helper could not set up the sandbox for a tofu command.
    #[error("the sandbox could not be set up for `tofu {cmd}` (the `tofuflow sandbox:` line in the run's log says why; `tofuflow-agent check` tests this host)")]
    Sandbox { cmd: String },
    /// tofu (or the sandbox helper) could not be started or waited for.
    #[error("{0}")]
    Launch(String),
    /// A tofu command failed; `signal` is the signal that ended it, when that is worth saying.
    #[error(
        "tofu {cmd} failed (exit {exit}{}): see the run's log",
        signal_note(signal)
    )]
    Tofu {
        cmd: String,
        exit: i32,
        signal: Option<String>,
    },
    /// A tofu command whose output is data (`show -json`, `output -json`) failed.
    #[error("tofu {cmd} failed (exit {exit})")]
    TofuData { cmd: String, exit: i32 },
    /// `tofu show -json` printed something that is not JSON.
    #[error("tofu show -json did not print JSON: {0}")]
    PlanJson(#[source] serde_json::Error),
    /// `tofu plan` said there are changes but left no plan file.
    #[error("tofu plan wrote no plan file: {0}")]
    NoPlanFile(#[source] io::Error),
}

impl TaskError {
    /// A working-directory step that failed: `what` names it ("cannot create working directory /x").
    pub fn workdir(what: impl Into<String>, source: impl Into<Source>) -> TaskError {
        TaskError::Workdir {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// ", killed for CPU time: …" after the exit code, when a signal ended tofu.
fn signal_note(signal: &Option<String>) -> String {
    signal
        .as_deref()
        .map(|s| format!(", {}", crate::runner::process::explain_signal(s)))
        .unwrap_or_default()
}

/// Why a bundle is refused: every refusal names the entry and the reason.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The data is not what its digest names.
    #[error("bundle digest mismatch: expected {expected}, got {got}")]
    DigestMismatch { expected: String, got: String },
    /// Not a gzip-compressed tar archive.
    #[error("bundle is not a tar.gz archive: {0}")]
    NotAnArchive(#[source] io::Error),
    /// The archive breaks off or is damaged.
    #[error("bundle is corrupt: {0}")]
    Corrupt(#[source] io::Error),
    /// An entry's path cannot be read.
    #[error("bundle entry has an unreadable path: {0}")]
    UnreadablePath(#[source] io::Error),
    /// An entry breaks a rule (outside the tree, too deep, too large, a device, …).
    #[error("bundle entry {name:?} rejected: {why}")]
    Rejected { name: String, why: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_users_see_them() {
        let e = TaskError::Tofu {
            cmd: "init".into(),
            exit: 1,
            signal: None,
        };
        assert_eq!(
            e.to_string(),
            "tofu init failed (exit 1): see the run's log"
        );
        let e = TaskError::Tofu {
            cmd: "apply".into(),
            exit: -1,
            signal: Some("SIGXFSZ".into()),
        };
        assert_eq!(
            e.to_string(),
            "tofu apply failed (exit -1, killed for file size: the task's file size limit was reached): see the run's log"
        );
        let e = TaskError::TofuData {
            cmd: "show -json".into(),
            exit: 3,
        };
        assert_eq!(e.to_string(), "tofu show -json failed (exit 3)");
        let e = TaskError::Fetch {
            digest: "sha256:ab".into(),
            message: "not found".into(),
            code: tonic::Code::NotFound,
        };
        assert_eq!(e.to_string(), "cannot fetch sha256:ab: not found");
        let e = TaskError::workdir(
            "cannot create working directory /w",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(
            e.to_string(),
            "cannot create working directory /w: permission denied"
        );
    }
}
