//! `--users-file`s for coordinators with user tokens.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes a `--users-file` into `dir` for `(name, role, token)` entries (only the tokens'
/// SHA-256 hashes go in it, as in production) and returns its path. `role` may list several,
/// comma-separated (`operator,approver`); they hold on every workspace.
pub fn users_file(dir: &Path, users: &[(&str, &str, &str)]) -> PathBuf {
    let mut text = String::new();
    for (name, role, token) in users {
        let mut c = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sha256sum");
        {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        }
        let out = c.wait_with_output().unwrap();
        let hash = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let roles: Vec<String> = role.split(',').map(|r| format!("{:?}", r.trim())).collect();
        text.push_str(&format!(
            "[[users]]\nname = \"{name}\"\nroles = [{}]\ntoken_sha256 = \"{hash}\"\n\n",
            roles.join(", ")
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("users-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, text).unwrap();
    path
}
