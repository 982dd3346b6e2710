//! Webhook notifications end to end, on both databases, with receivers that are plain HTTP
//! servers in the test: a run of `ml/a` that waits for approval and is then applied reaches a
//! `json` webhook on `ml/*` twice (needs_approval, applied), signed with the secret the
//! coordinator generated and printed once; a `slack` webhook whose receiver answers 500 first
//! gets the same delivery again and both attempts are shown by `webhook show`; a run of
//! `prod/a` reaches neither; a test send arrives; neither secret appears in any body, the
//! coordinator's log or the database (nor the Slack URL's token); a URL of the coordinator
//! itself is refused; creating and deleting are audited. Over the JSON API a
//! viewer may not list webhooks, and an admin creates, disables (a test send is then refused),
//! deletes, and redelivers a delivery (the receiver gets the same id again). A 410 answer
//! fails a delivery at once.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tofuflow_e2e::{bin_dir, example, leaks, wait_for, AgentOpts, Cluster, Db};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(90);
const STATE_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SLACK_SECRET: &str = "slack-canary-secret-7d41e09b2c";
/// The token part of the Slack webhook's URL (such URLs are credentials too).
const SLACK_PATH: &str = "/services/T0/B0/url-canary-4f1e83";

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// An HTTP server answering each request with the next status of a script (then 200).
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (g, script) = (got.clone(), Arc::new(Mutex::new(script.to_vec())));
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (g, script) = (g.clone(), script.clone());
                tokio::spawn(async move { serve(s, g, script).await });
            }
        });
        Receiver { port, got }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived; returns them.
    async fn wait(&self, n: usize) -> Vec<Got> {
        wait_for(&format!("{n} webhook requests"), T, || async {
            let g = self.got();
            (g.len() >= n).then_some(g)
        })
        .await
    }
}

/// Reads one request (head, then `content-length` bytes), records it, answers it.
async fn serve(
    mut s: tokio::net::TcpStream,
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<Vec<u16>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let path = lines
        .next()
        .unwrap_or_default()
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
    let status = {
        let mut sc = script.lock().unwrap();
        if sc.is_empty() {
            200
        } else {
            sc.remove(0)
        }
    };
    got.lock().unwrap().push(Got {
        path,
        headers,
        body,
    });
    let answer = if status == 200 {
        "ok"
    } else {
        "boom: try later"
    };
    let res = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = s.write_all(res.as_bytes()).await;
}

/// HMAC-SHA256, written out here (RFC 2104) so the test checks the documented scheme, not the
/// coordinator's own code.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    hex::encode(outer.finalize())
}

/// Checks `X-Tofuflow-Signature` as the README tells a receiver to: `t=<unix>,v1=<hex>`, the
/// HMAC of `<t>.<body>`, and `t` within five minutes of now.
fn assert_signed(g: &Got, secret: &str) {
    let h = g
        .headers
        .get("x-tofuflow-signature")
        .expect("a signature header");
    let (t, v1) = h.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    assert_eq!(
        v1,
        hmac_sha256(secret.as_bytes(), format!("{t}.{}", g.body).as_bytes()),
        "signature of {}",
        g.body
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - t.parse::<i64>().unwrap()).abs() < 300,
        "fresh timestamp {t}"
    );
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// `tofuflow webhook create ...` with `stdin` on standard input.
fn create_with_stdin(c: &Cluster, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = std::process::Command::new(bin_dir().join("tofuflow"))
        .args(["webhook", "create"])
        .args(args)
        .env("TOFUFLOW_COORDINATOR", c.grpc_url())
        .env("TOFUFLOW_TOKEN", c.token.as_deref().unwrap())
        .env("TOFUFLOW_CONFIG_FILE", c.dir.join("cli-config.toml"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Bad URLs are refused with what to do; returns the generated secret of webhook `approvals`.
fn create_webhooks(c: &Cluster, a: &Receiver, b: &Receiver) -> String {
    let bad = c.cli(&[
        "webhook",
        "create",
        "bad",
        "--url",
        "ftp://example.com/x",
        "-w",
        "**",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("only http:// and https://"));
    let private = c.cli(&[
        "webhook",
        "create",
        "bad",
        "--url",
        &a.url("/hook"),
        "-w",
        "**",
    ]);
    assert!(String::from_utf8_lossy(&private.stderr).contains("--allow-private"));
    let own = format!("{}/api/v1/runs", c.http_url());
    let own = c.cli(&[
        "webhook",
        "create",
        "bad",
        "--url",
        &own,
        "-w",
        "**",
        "--allow-private",
    ]);
    assert!(String::from_utf8_lossy(&own.stderr).contains("own address"));
    let created = json(&c.cli(&[
        "webhook",
        "create",
        "approvals",
        "--url",
        &a.url("/hook"),
        "-w",
        "ml/*",
        "-e",
        "needs_approval",
        "-e",
        "applied",
        "--allow-private",
        "-o",
        "json",
    ]));
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32, "{created}");
    let out = create_with_stdin(
        c,
        &[
            "slack",
            "--url",
            &b.url(SLACK_PATH),
            "-w",
            "ml/*",
            "-e",
            "applied",
            "--format",
            "slack",
            "--allow-private",
            "--secret-file",
            "-",
        ],
        &format!("{SLACK_SECRET}\n"),
    );
    let text = ok(&out);
    assert!(
        text.contains("created webhook slack") && !text.contains("secret"),
        "{text}"
    );
    secret
}

/// The JSON API: a viewer may not even list webhooks; an admin creates, disables (a test
/// send is then refused) and deletes one.
async fn json_api(c: &Cluster, a: &Receiver) {
    let viewer = c.user_token("vera", "viewer").await;
    let denied = c.api("GET", "/api/v1/webhooks", Some(&viewer), None, &[]);
    assert_eq!(
        denied.status,
        403,
        "{}",
        String::from_utf8_lossy(&denied.body)
    );
    let admin = c.token.clone().unwrap();
    let all = c
        .api("GET", "/api/v1/webhooks", Some(&admin), None, &[])
        .json();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let body = format!(
        r#"{{"name": "api-hook", "url": "{}", "workspaces": ["**"], "allow_private": true}}"#,
        a.url("/api")
    );
    let made = c.api(
        "POST",
        "/api/v1/webhooks",
        Some(&admin),
        Some(("application/json", body.as_bytes())),
        &[],
    );
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    let made = made.json();
    assert!(
        made["secret"].as_str().unwrap().starts_with("tfwhsec_"),
        "{made}"
    );
    assert_eq!(
        made["webhook"]["events"].as_array().unwrap().len(),
        5,
        "{made}"
    );
    let off = c
        .api(
            "POST",
            "/api/v1/webhooks/api-hook/disable",
            Some(&admin),
            None,
            &[],
        )
        .json();
    assert_eq!(off["enabled"], false, "{off}");
    let refused = c.api(
        "POST",
        "/api/v1/webhooks/api-hook/test",
        Some(&admin),
        None,
        &[],
    );
    assert_eq!(refused.status, 409, "a disabled webhook is not tested");
    let gone = c.api(
        "DELETE",
        "/api/v1/webhooks/api-hook",
        Some(&admin),
        None,
        &[],
    );
    assert_eq!(gone.status, 200);
}

/// Over the JSON API, the test delivery `test_id` is shown and sent again: `a` gets the same
/// id and body a second time.
async fn json_api_redeliver(c: &Cluster, a: &Receiver, test_id: &str) {
    let admin = c.token.clone().unwrap();
    let shown = c
        .api(
            "GET",
            "/api/v1/webhooks/approvals?deliveries=1",
            Some(&admin),
            None,
            &[],
        )
        .json();
    assert_eq!(shown["deliveries"][0]["id"], test_id, "{shown}");
    let path = format!("/api/v1/webhook-deliveries/{test_id}/redeliver");
    let again = wait_for(
        "the test delivery delivered, then redelivered",
        T,
        || async {
            let r = c.api("POST", &path, Some(&admin), None, &[]);
            (r.status == 200).then(|| r.json())
        },
    )
    .await;
    assert_eq!(again["state"], "pending", "{again}");
    let got = a.wait(4).await;
    assert_eq!(
        got[3].headers["x-tofuflow-delivery"], test_id,
        "the same id again"
    );
    assert_eq!(got[3].body, got[2].body);
}

/// A run of `ml/a` waits for approval, then is approved and applied: `a` gets both, signed;
/// the run's id.
async fn approval_then_apply(c: &Cluster, a: &Receiver, secret: &str, vars: &[&str]) -> String {
    let id = c.submit(&example("gpu-pool"), "ml/a", vars);
    c.wait_state(&id, &["awaiting_approval"], T).await;
    let first = a.wait(1).await;
    assert_eq!(first[0].path, "/hook");
    assert_eq!(first[0].headers["x-tofuflow-event"], "needs_approval");
    assert_signed(&first[0], secret);
    let v: serde_json::Value = serde_json::from_str(&first[0].body).unwrap();
    assert_eq!(v["run"]["id"], id.as_str());
    assert_eq!(v["run"]["workspace"], "ml/a");
    assert_eq!(v["run"]["state"], "awaiting_approval");
    assert_eq!(v["run"]["tags"]["team"], "ml");
    assert_eq!(v["run"]["plan"]["has_changes"], true, "{v}");
    assert!(v["run"]["plan"]["add"].as_i64().unwrap() > 0, "{v}");
    let url = v["run"]["url"].as_str().unwrap();
    assert!(url.ends_with(&format!("/ui/#/runs/{id}")), "{v}");
    assert_eq!(
        v["delivery_id"],
        first[0].headers["x-tofuflow-delivery"].as_str()
    );

    ok(&c.cli(&["run", "approve", &id]));
    c.wait_state(&id, &["applied"], T).await;
    let both = a.wait(2).await;
    assert_eq!(both[1].headers["x-tofuflow-event"], "applied");
    assert_signed(&both[1], secret);
    assert_ne!(
        both[0].headers["x-tofuflow-delivery"],
        both[1].headers["x-tofuflow-delivery"]
    );
    id
}

/// `b` answered 500 first: it got the same Slack-shaped delivery twice, and `webhook show`
/// lists both attempts.
async fn slack_retried(c: &Cluster, b: &Receiver, id: &str) {
    let tries = b.wait(2).await;
    assert_eq!(tries[0].body, tries[1].body, "the same delivery, retried");
    assert_eq!(
        tries[0].headers["x-tofuflow-delivery"],
        tries[1].headers["x-tofuflow-delivery"]
    );
    assert_signed(&tries[1], SLACK_SECRET);
    let slack: serde_json::Value = serde_json::from_str(&tries[1].body).unwrap();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("run {id} on ml/a applied")),
        "{slack}"
    );
    assert_eq!(slack["blocks"][0]["type"], "section");
    let section = slack["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(section.contains("/ui/#/runs/"), "{slack}");

    let shown = wait_for("the retried delivery recorded as delivered", T, || async {
        let w = json(&c.cli(&["webhook", "show", "slack", "-o", "json"]));
        (w["deliveries"][0]["state"] == "delivered").then_some(w)
    })
    .await;
    let d = &shown["deliveries"][0];
    let codes: Vec<u64> = d["tries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [500, 200], "{shown}");
    assert_eq!(d["tries"][0]["answer_excerpt"], "boom: try later");
    assert_eq!(d["run_id"], id);
    let text = ok(&c.cli(&["webhook", "show", "slack"]));
    assert!(
        text.contains("#1") && text.contains("500") && text.contains("#2"),
        "{text}"
    );
}

/// A test send reaches `a`, signed; its delivery id.
async fn test_send(c: &Cluster, a: &Receiver, secret: &str) -> String {
    let test = json(&c.cli(&["webhook", "test", "approvals", "-o", "json"]));
    let id = test["id"].as_str().unwrap().to_string();
    let got = a.wait(3).await;
    assert_eq!(got[2].headers["x-tofuflow-event"], "test");
    assert_eq!(got[2].headers["x-tofuflow-delivery"], id);
    assert_signed(&got[2], secret);
    id
}

/// Neither secret is in a body, the database or the coordinator's log; the Slack URL's token
/// is in neither of the latter.
async fn no_secret_anywhere(c: &Cluster, got: &[Got], secret: &str) {
    let mut leaked = Vec::new();
    for g in got {
        leaked.extend(leaks(
            &[secret, SLACK_SECRET],
            "a delivery body",
            g.body.as_bytes(),
        ));
    }
    let canaries = [secret, SLACK_SECRET, &SLACK_PATH[16..]];
    for (table, bytes) in c.database_contents().await {
        leaked.extend(leaks(&canaries, &table, &bytes));
    }
    leaked.extend(leaks(
        &canaries,
        "coordinator.log",
        &std::fs::read(c.dir.join("coordinator.log")).unwrap(),
    ));
    assert!(leaked.is_empty(), "leaked: {leaked:#?}");
}

/// A receiver answering 410 Gone: the delivery fails after that one attempt (a 4xx other
/// than 408 and 429 is final).
async fn a_client_error_is_final(c: &Cluster) {
    let gone = Receiver::start(&[410]).await;
    let url = gone.url("/gone");
    ok(&c.cli(&[
        "webhook",
        "create",
        "gone",
        "--url",
        &url,
        "-w",
        "**",
        "--allow-private",
    ]));
    ok(&c.cli(&["webhook", "test", "gone"]));
    let shown = wait_for("the delivery to fail", T, || async {
        let w = json(&c.cli(&["webhook", "show", "gone", "-o", "json"]));
        (w["deliveries"][0]["state"] == "failed").then_some(w)
    })
    .await;
    let tries = shown["deliveries"][0]["tries"].as_array().unwrap();
    assert_eq!(tries.len(), 1, "{shown}");
    assert_eq!(tries[0]["status_code"], 410, "{shown}");
    assert_eq!(gone.got().len(), 1);
    let failed = tofuflow_e2e::metric(c, "tofuflow_webhook_deliveries{state=\"failed\"}");
    assert_eq!(failed, Some(1.0));
}

fn audited(c: &Cluster, kind: &str) -> usize {
    let audit = json(&c.cli(&["audit", "list", "--kind", kind, "-o", "json"]));
    audit.as_array().unwrap().len()
}

async fn scenario(db: Db) {
    let mut c = Cluster::builder(db)
        .coordinator_args(&["--state-key", STATE_KEY])
        .start()
        .await;
    c.agent(AgentOpts::default()).await;
    let (a, b) = (Receiver::start(&[]).await, Receiver::start(&[500]).await);
    let secret = create_webhooks(&c, &a, &b);
    let vars = [
        "--var",
        "gpu_count=1",
        "--var",
        "region=us-east-1",
        "--tag",
        "team=ml",
    ];

    // prod/a matches no glob: once its run is applied (and with it every delivery it would
    // have written, in the same transactions), nothing was queued for it.
    let mut auto = vars.to_vec();
    auto.push("--auto-approve");
    let prod = c.submit(&example("gpu-pool"), "prod/a", &auto);
    c.wait_state(&prod, &["applied"], T).await;

    let id = approval_then_apply(&c, &a, &secret, &vars).await;
    slack_retried(&c, &b, &id).await;
    let approvals = json(&c.cli(&["webhook", "show", "approvals", "-o", "json"]));
    let runs: Vec<&str> = approvals["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs, [id.as_str(), id.as_str()], "nothing for prod/a");

    let test_id = test_send(&c, &a, &secret).await;
    json_api(&c, &a).await;
    json_api_redeliver(&c, &a, &test_id).await;
    a_client_error_is_final(&c).await;
    assert_eq!(
        audited(&c, "webhook_created"),
        4,
        "approvals, slack, api-hook, gone"
    );
    let got: Vec<Got> = a.got().into_iter().chain(b.got()).collect();
    no_secret_anywhere(&c, &got, &secret).await;

    ok(&c.cli(&["webhook", "delete", "slack"]));
    assert_eq!(c.row_count("webhooks").await, 2, "approvals, gone");
    assert_eq!(audited(&c, "webhook_deleted"), 2, "api-hook, slack");
    let gone = c.cli(&["webhook", "show", "slack"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no webhook"));
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_on_sqlite() {
    scenario(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_on_postgres() {
    scenario(Db::Postgres).await;
}
