//! A PostgreSQL server of its own for a test: the machine's PostgreSQL binaries (Debian
//! package) with a fresh data directory, a free port on 127.0.0.1, trust authentication, run
//! as the `postgres` user (initdb and the server refuse root). The test may stop and start it
//! (a database restart mid-run); it is stopped and its directory removed when dropped, also
//! when the test panics.

use crate::bins::free_port;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The private server (see the module's doc).
pub struct PgServer {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

/// The newest installed PostgreSQL's binaries (`/usr/lib/postgresql/<major>/bin`).
fn pg_bin() -> PathBuf {
    let mut majors: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL must be installed (Debian package postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").is_file())
        .collect();
    majors.sort();
    majors.pop().expect("no pg_ctl under /usr/lib/postgresql")
}

/// Runs a PostgreSQL tool as the `postgres` user.
fn as_postgres(tool: &PathBuf, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(tool)
        .args(args)
        .output()
        .expect("runuser must exist")
}

fn ok(what: &str, out: Output) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgServer {
    /// Creates the data directory and starts the server (waiting until it accepts connections).
    pub fn start() -> PgServer {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = std::env::temp_dir().join(format!("tofuflow-pg-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        ok(
            "chown",
            Command::new("chown")
                .args(["postgres:postgres", &dir.display().to_string()])
                .output()
                .unwrap(),
        );
        let s = PgServer {
            dir,
            port: free_port(),
            bin: pg_bin(),
        };
        let data = s.data();
        ok(
            "initdb",
            as_postgres(
                &s.bin.join("initdb"),
                &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
            ),
        );
        s.start_again();
        s
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// The admin URL (the `postgres` database).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`pg_ctl stop -m fast`: open connections are cut).
    pub fn stop(&self) {
        ok(
            "pg_ctl stop",
            as_postgres(
                &self.bin.join("pg_ctl"),
                &["stop", "-D", &self.data(), "-m", "fast", "-w"],
            ),
        );
    }

    /// Starts the server on its port and waits until it accepts connections.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        ok(
            "pg_ctl start",
            as_postgres(
                &self.bin.join("pg_ctl"),
                &["start", "-D", &self.data(), "-o", &opts, "-l", &log, "-w"],
            ),
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["stop", "-D", &self.data(), "-m", "immediate", "-w"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
