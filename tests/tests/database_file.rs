//! The SQLite database holds runs, plans, logs and state: the coordinator creates it (and so its
//! `-wal`/`-shm` files) owner-only, and refuses to start on one that other local users can read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tofuflow_e2e::{bin_dir, Cluster, Db};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Starts the coordinator binary on `db` and waits (with a deadline) for it to exit.
fn start_on(db: &Path) -> std::process::Output {
    let mut child = Command::new(bin_dir().join("tofuflow-coordinator"))
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        // Nothing must get as far as the broker: this port has none.
        .args(["--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coordinator");
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the coordinator kept running on a database others can read");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_database_and_its_wal_are_readable_by_the_owner_only() {
    let c = Cluster::start(Db::Sqlite).await;
    let db = c.dir.join("coordinator.db");
    assert_eq!(mode(&db), 0o600, "{}", db.display());
    for suffix in ["-wal", "-shm"] {
        let f = c.dir.join(format!("coordinator.db{suffix}"));
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_others_can_read_is_refused_with_the_fix() {
    let dir =
        std::env::temp_dir().join(format!("tofuflow-dbfile-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("coordinator.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = start_on(&db);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit {:?}: {err}", out.status);
    assert!(
        err.contains(&format!("{} has mode 0644", db.display())),
        "names the file and its mode: {err}"
    );
    assert!(
        err.contains(&format!("chmod 600 {}", db.display())),
        "says how to fix it: {err}"
    );
    assert_eq!(mode(&db), 0o644, "the coordinator did not touch the file");
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "nothing was written"
    );

    // A private database whose leftover WAL others can read is refused too.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wal = dir.join("coordinator.db-wal");
    std::fs::write(&wal, b"").unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = start_on(&db);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit {:?}: {err}", out.status);
    assert!(
        err.contains(&format!("chmod 600 {}", wal.display())),
        "names the WAL file: {err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
