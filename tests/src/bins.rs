//! The built binaries, the repository's examples, and finding processes by command line.

use std::path::{Path, PathBuf};

/// Directory holding the workspace's built binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    for b in [
        "tofuflow-coordinator",
        "tofuflow-agent",
        "tofuflow",
        "tofu-double",
    ] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: build the binaries first with `cargo build --workspace --bins` (the README's test command does)",
            dir.join(b).display()
        );
    }
    dir
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Process ids whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && pid != std::process::id() as i32 {
                out.push(pid);
            }
        }
    }
    out
}
