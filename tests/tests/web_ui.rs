//! The web UI in a real browser: starts a cluster (RabbitMQ vhost, SQLite, the coordinator and
//! one agent) with an admin, an approver and a viewer, then runs the Playwright suite in
//! `tests/browser/` against it (Debian's Chromium): login, the live log, the plan diff,
//! approval by an approver only, the apply and its state version, rollback, and the refusal
//! of cross-site requests. Screenshots of every page are kept in `TOFUFLOW_BROWSER_OUTPUT`
//! (default `target/tmp/web_ui/`), which outlives the test.
//!
//! The suite needs Python with playwright and pytest-playwright: `TOFUFLOW_BROWSER_PYTHON`
//! names that interpreter (`scripts/test` makes the virtualenv and sets it). Without it the
//! test says so loudly and does nothing; with it, any failure to launch the browser fails.
//! The session's rules (login, the cookie as a credential, cross-site refusal, headers) are
//! also checked without a browser, so every `cargo test` covers them.

use std::time::Instant;
use tofuflow_e2e::{AgentOpts, Cluster, Db};

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
    let approver = c.user_token("ann", "approver").await;
    let viewer = c.user_token("vera", "viewer").await;
    let out = std::env::var("TOFUFLOW_BROWSER_OUTPUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web_ui"));
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

/// Logs in through the form with `token`: the answer's status, `Location` and `Set-Cookie`.
fn log_in(c: &Cluster, token: &str) -> (u16, String, String) {
    let body = format!("token={token}");
    let a = c.api(
        "POST",
        "/ui/login",
        None,
        Some(("application/x-www-form-urlencoded", body.as_bytes())),
        &[],
    );
    (
        a.status,
        a.header("location").unwrap_or_default(),
        a.header("set-cookie").unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_cookie_is_a_credential_and_cross_site_use_is_refused() {
    let c = Cluster::start(Db::Sqlite).await;
    let viewer = c.user_token("vera", "viewer").await;
    let root = c.api("GET", "/", None, None, &[]);
    assert_eq!(root.status, 303);
    assert_eq!(root.header("location").as_deref(), Some("/ui/"));
    let page = c.api("GET", "/ui/login", None, None, &[]);
    assert_eq!(
        page.header("content-security-policy").as_deref(),
        Some("default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
    );
    assert_eq!(
        page.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        page.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );

    let (status, _, cookie) = log_in(&c, "tfu_not_a_token");
    assert_eq!(
        (status, cookie.as_str()),
        (401, ""),
        "a bad token starts nothing"
    );
    let (status, location, cookie) = log_in(&c, &viewer);
    assert_eq!((status, location.as_str()), (303, "/ui/"));
    assert!(
        cookie.starts_with("tofuflow_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/")
            && !cookie.contains("Secure")
            && !cookie.contains(&viewer),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let jar = [("Cookie", session.as_str())];
    let me = c.api("GET", "/api/v1/me", None, None, &jar);
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["name"], "vera", "the cookie stands for the token");
    assert_eq!(c.api("GET", "/ui/", None, None, &jar).status, 200);

    let lock = "/api/v1/workspaces/web%2Fx/state/lock";
    let foreign = [
        ("Cookie", session.as_str()),
        ("Origin", "https://evil.example"),
    ];
    let csrf = c.api(
        "POST",
        lock,
        None,
        Some(("application/json", b"{}")),
        &foreign,
    );
    assert_eq!(csrf.status, 403, "{}", String::from_utf8_lossy(&csrf.body));
    assert!(
        csrf.json()["detail"]
            .as_str()
            .unwrap()
            .contains("evil.example"),
        "refused as cross-origin, before any role is asked"
    );
    let cross = [
        ("Cookie", session.as_str()),
        ("Sec-Fetch-Site", "cross-site"),
    ];
    assert_eq!(c.api("GET", "/api/v1/me", None, None, &cross).status, 403);
    let admin = c.token.clone().unwrap();
    let bearer = c.api(
        "GET",
        "/api/v1/me",
        Some(&admin),
        None,
        &[("Sec-Fetch-Site", "cross-site")],
    );
    assert_eq!(bearer.status, 200, "bearer calls are not cookie calls");

    let out = c.api("POST", "/ui/logout", None, None, &jar);
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(c.api("GET", "/api/v1/me", None, None, &jar).status, 401);
    assert_eq!(c.api("GET", "/ui/", None, None, &jar).status, 303);
}

/// A browser's session is one of the deployment, not of a process: logged in through one
/// coordinator, its cookie works on another behind the same address and after a restart, and
/// logging out through the second ends it on the first.
#[tokio::test(flavor = "multi_thread")]
async fn a_web_session_works_on_every_coordinator_and_survives_a_restart() {
    let mut c = Cluster::start(Db::Postgres).await;
    let viewer = c.user_token("vera", "viewer").await;
    let (status, _, cookie) = log_in(&c, &viewer);
    assert_eq!(status, 303);
    let session = cookie.split(';').next().unwrap().to_string();
    let jar = [("Cookie", session.as_str())];
    let second = c.another_coordinator(2).await;
    let first_port = c.http_port;
    c.http_port = second.http_port;
    let me = c.api("GET", "/api/v1/me", None, None, &jar);
    assert_eq!(me.status, 200, "the other coordinator knows the session");
    assert_eq!(me.json()["name"], "vera");
    c.http_port = first_port;
    c.restart_coordinator().await;
    assert_eq!(
        c.api("GET", "/api/v1/me", None, None, &jar).status,
        200,
        "a restart logs nobody out"
    );
    c.http_port = second.http_port;
    assert_eq!(c.api("POST", "/ui/logout", None, None, &jar).status, 303);
    c.http_port = first_port;
    assert_eq!(
        c.api("GET", "/api/v1/me", None, None, &jar).status,
        401,
        "logged out everywhere"
    );
}
