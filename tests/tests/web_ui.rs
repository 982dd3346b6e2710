//! The web UI in a real browser: starts a cluster (RabbitMQ vhost, SQLite, the coordinator and
//! one agent) with an admin, an approver and a viewer, then runs the Playwright suite in
//! `tests/browser/` against it (Debian's Chromium): login, the live log, the plan diff,
//! approval by an approver only, the apply and its state version, rollback, and the refusal
//! of cross-site requests. Screenshots of every page are kept in the output directory.
//!
//! The suite needs Python with playwright and pytest-playwright: `TOFUFLOW_BROWSER_PYTHON`
//! names that interpreter (`scripts/test` makes the virtualenv and sets it). Without it the
//! test says so loudly and does nothing; with it, any failure to launch the browser fails.

use std::time::Instant;
use tofuflow_e2e::{AgentOpts, Cluster, Db};
use tofuflow_proto::v1;

async fn token_for(c: &Cluster, user: &str, role: &str) -> String {
    let mut client = c.client().await;
    client
        .grant_role(v1::RoleGrantRequest {
            user: user.into(),
            role: role.into(),
            workspaces: "**".into(),
        })
        .await
        .unwrap();
    client
        .create_token(v1::CreateTokenRequest {
            user: user.into(),
            ttl_ms: 3_600_000,
            description: "browser test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_ui_takes_a_run_from_login_to_rollback_in_a_browser() {
    let Some(python) = std::env::var_os("TOFUFLOW_BROWSER_PYTHON") else {
        eprintln!(
            "\n=== BROWSER TESTS NOT RUN: TOFUFLOW_BROWSER_PYTHON is not set (scripts/test sets it \
             up with playwright and Debian's chromium) ===\n"
        );
        return;
    };
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let approver = token_for(&c, "ann", "approver").await;
    let viewer = token_for(&c, "vera", "viewer").await;
    let out = std::env::var("TOFUFLOW_BROWSER_OUTPUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| c.dir.join("browser"));
    std::fs::create_dir_all(&out).unwrap();
    let suite = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let started = Instant::now();
    let status = std::process::Command::new(python)
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-v", "--output"])
        .arg(out.join("pytest"))
        .arg(&suite)
        .env("TOFUFLOW_URL", c.http_url())
        .env("TOFUFLOW_ADMIN_TOKEN", c.token.as_deref().unwrap())
        .env("TOFUFLOW_APPROVER_TOKEN", &approver)
        .env("TOFUFLOW_VIEWER_TOKEN", &viewer)
        .env("TOFUFLOW_SCREENSHOTS", &out)
        .status()
        .expect("start pytest");
    eprintln!(
        "browser suite: {status} in {:.1}s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    assert!(status.success(), "the browser suite failed: see above");
}
