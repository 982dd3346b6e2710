//! The HTTP JSON API end to end: every operation of the served OpenAPI document exists and
//! refuses an anonymous caller with problem+json; a bundle upload and an idempotent submit; a
//! run listed by tag and paged; its log as pages and as an SSE stream that resumes after
//! Last-Event-ID and answers 204 once nothing follows; approval refused to a viewer (403) and
//! done by an approver; the state it wrote, pulled, locked and unlocked; the caller; audit and
//! its chain verified (admin only). And a table of every documented operation, called by a
//! viewer, an operator and an approver on objects that exist: each role that may not is refused
//! with 403 problem+json, each that may is not.

use std::io::Write;
use std::time::Duration;
use tofuflow_e2e::{AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(90);

const MODULE: &str = r#"
variable "who" {
  type = string
}
resource "terraform_data" "hello" {
  input = var.who
  provisioner "local-exec" {
    command = "echo one; echo two; echo three"
  }
}
output "greeting" {
  value = "hello ${var.who}"
}
"#;

fn bundle() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(MODULE.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "main.tf", MODULE.as_bytes())
        .unwrap();
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

/// Every operation in the document answers an anonymous call with 401 problem+json (so each
/// one is a route, behind the credential check); unknown API paths are 404 problem+json.
fn spec_matches_routes(c: &Cluster) -> serde_json::Value {
    let doc = c.api("GET", "/api/v1/openapi.json", None, None, &[]);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for want in [
        "/api/v1/runs",
        "/api/v1/runs/{id}/logs/stream",
        "/api/v1/workspaces/{workspace}/state",
        "/api/v1/me",
        "/api/v1/environments",
        "/api/v1/environments/{workspace}/extend",
        "/api/v1/policies",
        "/api/v1/policies/{name}",
    ] {
        assert!(paths.contains_key(want), "{want} documented");
    }
    let mut n = 0;
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", "no-such-run")
            .replace("{workspace}", "ws")
            .replace("{version}", "1")
            .replace("{name}", "no-such-webhook");
        for method in ops.as_object().unwrap().keys() {
            let a = c.api(
                &method.to_uppercase(),
                &concrete,
                None,
                Some(("application/json", b"{}")),
                &[],
            );
            assert_eq!(
                a.status,
                401,
                "{method} {path}: {}",
                String::from_utf8_lossy(&a.body)
            );
            assert_eq!(
                a.header("content-type").as_deref(),
                Some("application/problem+json")
            );
            n += 1;
        }
    }
    assert!(n >= 17, "{n} operations");
    let a = c.api("GET", "/api/v1/nothing-here", None, None, &[]);
    assert_eq!((a.status, a.json()["status"].as_u64()), (404, Some(404)));
    doc
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_api_does_what_the_cli_does() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    spec_matches_routes(&c);
    let admin = c.token.clone().unwrap();
    let viewer = c.user_token("vera", "viewer").await;
    let approver = c.user_token("ann", "approver").await;

    let up = c.api(
        "POST",
        "/api/v1/bundles",
        Some(&admin),
        Some(("application/gzip", &bundle())),
        &[],
    );
    assert_eq!(up.status, 201, "{}", String::from_utf8_lossy(&up.body));
    let digest = up.json()["digest"].as_str().unwrap().to_string();
    let body = serde_json::json!({"workspace": "api/demo", "bundle_digest": digest, "variables": {"who": "api"}, "tags": {"dag_id": "api_test"}});
    let bytes = body.to_string().into_bytes();
    let key = [("Idempotency-Key", "submit-1")];
    let first = c.api(
        "POST",
        "/api/v1/runs",
        Some(&admin),
        Some(("application/json", &bytes)),
        &key,
    );
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let id = first.json()["id"].as_str().unwrap().to_string();
    let again = c.api(
        "POST",
        "/api/v1/runs",
        Some(&admin),
        Some(("application/json", &bytes)),
        &key,
    );
    assert_eq!(
        again.json()["id"],
        id.as_str(),
        "a retried submit answers the same run"
    );
    let other = serde_json::json!({"workspace": "api/other", "bundle_digest": digest, "variables": {"who": "x"}}).to_string();
    let clash = c.api(
        "POST",
        "/api/v1/runs",
        Some(&admin),
        Some(("application/json", other.as_bytes())),
        &key,
    );
    assert_eq!(
        clash.status,
        422,
        "{}",
        String::from_utf8_lossy(&clash.body)
    );
    assert_eq!(
        clash.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert!(clash.json()["detail"]
        .as_str()
        .unwrap()
        .contains("different request"));
    let bad = c.api(
        "POST",
        "/api/v1/runs",
        Some(&admin),
        Some((
            "application/json",
            br#"{"workspace": "../x", "bundle_digest": "sha256:00"}"#,
        )),
        &[],
    );
    assert_eq!(bad.status, 400);
    assert!(bad.json()["detail"]
        .as_str()
        .unwrap()
        .contains("invalid workspace"));

    c.wait_state(&id, &["awaiting_approval"], T).await;
    let page = c.api(
        "GET",
        "/api/v1/runs?tag=dag_id%3Dapi_test&limit=1",
        Some(&viewer),
        None,
        &[],
    );
    let page = page.json();
    assert_eq!(page["runs"][0]["id"], id.as_str(), "{page}");
    assert_eq!(page["runs"][0]["tags"]["dag_id"], "api_test");

    let plan = c
        .api(
            "GET",
            &format!("/api/v1/runs/{id}/plan"),
            Some(&viewer),
            None,
            &[],
        )
        .json();
    let rc = &plan["changes"]["resource_changes"][0];
    assert_eq!(rc["address"], "terraform_data.hello", "{plan}");
    assert_eq!(rc["change"]["after"]["input"], "api");
    assert_eq!(plan["summary"]["add"], 1);
    let shown = c.cli(&["run", "plan", &id]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("# terraform_data.hello will be created"),
        "{shown}"
    );
    assert!(shown.contains("+ input = \"api\""), "{shown}");
    assert!(
        shown.contains("Plan: 1 to add, 0 to change, 0 to destroy."),
        "{shown}"
    );

    let denied = c.api(
        "POST",
        &format!("/api/v1/runs/{id}/approve"),
        Some(&viewer),
        None,
        &[],
    );
    assert_eq!(denied.status, 403);
    assert!(
        denied.json()["detail"].as_str().unwrap().contains("vera"),
        "names the caller"
    );
    let ok = c.api(
        "POST",
        &format!("/api/v1/runs/{id}/approve"),
        Some(&approver),
        Some(("application/json", br#"{"reason": "looks right"}"#)),
        &[],
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));

    let (status, events) = c.api_events(&format!("/api/v1/runs/{id}/logs/stream"), &viewer, None);
    assert_eq!(status, 200);
    let logs: Vec<&(String, String, String)> = events.iter().filter(|e| e.1 == "log").collect();
    let end = events.last().unwrap();
    assert_eq!(end.1, "end", "the stream ends with the run: {events:?}");
    assert!(end.2.contains("applied"), "{end:?}");
    assert!(
        logs.iter().any(|e| e.2.contains("(local-exec): two")),
        "the apply's output streamed"
    );
    let ids: Vec<u64> = logs.iter().map(|e| e.0.parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ids are consecutive: {ids:?}"
    );
    let mid = logs[logs.len() / 2].0.clone();
    let (_, resumed) = c.api_events(
        &format!("/api/v1/runs/{id}/logs/stream"),
        &viewer,
        Some(&mid),
    );
    let first_resumed: u64 = resumed
        .iter()
        .find(|e| e.1 == "log")
        .unwrap()
        .0
        .parse()
        .unwrap();
    assert_eq!(
        first_resumed,
        mid.parse::<u64>().unwrap() + 1,
        "resumes after Last-Event-ID"
    );
    let last = logs.last().unwrap().0.clone();
    let (gone, _) = c.api_events(
        &format!("/api/v1/runs/{id}/logs/stream"),
        &viewer,
        Some(&last),
    );
    assert_eq!(gone, 204, "nothing follows the last line of an ended run");
    let p = c
        .api(
            "GET",
            &format!("/api/v1/runs/{id}/logs?after={mid}&limit=2"),
            Some(&viewer),
            None,
            &[],
        )
        .json();
    assert_eq!(p["lines"].as_array().unwrap().len(), 2, "{p}");
    assert_eq!(
        p["lines"][0]["cursor"].as_str().unwrap(),
        (mid.parse::<u64>().unwrap() + 1).to_string()
    );
    assert_eq!(p["complete"], false);

    let run = c
        .api(
            "GET",
            &format!("/api/v1/runs/{id}"),
            Some(&viewer),
            None,
            &[],
        )
        .json();
    assert_eq!(run["state"], "applied");
    assert_eq!(run["outputs"]["greeting"]["value"], "hello api", "{run}");
    assert!(run["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["actor"] == "ann" && t["to"] == "approved"));

    let ws = "/api/v1/workspaces/api%2Fdemo/state";
    let h = c.api("GET", ws, Some(&viewer), None, &[]).json();
    assert_eq!(h["versions"][0]["run_id"], id.as_str(), "{h}");
    let content = c
        .api(
            "GET",
            &format!("{ws}/versions/0/content"),
            Some(&viewer),
            None,
            &[],
        )
        .json();
    assert!(content["serial"].as_u64().unwrap() >= 1, "{content}");
    let locked = c.api(
        "POST",
        &format!("{ws}/lock"),
        Some(&admin),
        Some(("application/json", br#"{"reason": "maintenance"}"#)),
        &[],
    );
    assert_eq!(
        locked.status,
        200,
        "{}",
        String::from_utf8_lossy(&locked.body)
    );
    let no = c.api("POST", &format!("{ws}/lock"), Some(&viewer), None, &[]);
    assert_eq!(no.status, 403);
    assert_eq!(
        c.api("POST", &format!("{ws}/unlock"), Some(&admin), None, &[])
            .status,
        200
    );

    let me = c
        .api("GET", "/api/v1/me", Some(&approver), None, &[])
        .json();
    assert_eq!(me["name"], "ann");
    assert_eq!(me["grants"][0]["role"], "approver");
    let audit = c
        .api(
            "GET",
            &format!("/api/v1/audit?run_id={id}"),
            Some(&admin),
            None,
            &[],
        )
        .json();
    let kinds: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"run_submitted") && kinds.contains(&"run_approved"),
        "{kinds:?}"
    );
    assert_eq!(
        c.api("GET", "/api/v1/audit", Some(&viewer), None, &[])
            .status,
        403
    );
    let verified = c
        .api("GET", "/api/v1/audit/verify", Some(&admin), None, &[])
        .json();
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(verified["checked"].as_u64().unwrap() >= kinds.len() as u64);
    assert_eq!(
        c.api("GET", "/api/v1/audit/verify", Some(&viewer), None, &[])
            .status,
        403
    );
    assert_eq!(
        c.api("GET", "/api/v1/agents", Some(&viewer), None, &[])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// One operation of the API as a role calls it: method, the documented path, the path with
/// objects that exist, a valid body, and the roles (besides admin) allowed to do it.
struct Op {
    method: &'static str,
    doc_path: &'static str,
    path: String,
    body: Option<serde_json::Value>,
    allowed: &'static [&'static str],
}

const ALL: &[&str] = &["viewer", "operator", "approver"];
const OPERATOR: &[&str] = &["operator"];
const APPROVER: &[&str] = &["approver"];
const ADMIN: &[&str] = &[];

/// Every operation, in an order where the allowed calls do not take away what later denials
/// need (rejects before approvals, cancels and deletes last).
fn operations(run: &str, ended: &str, wf: &str, ws: &str) -> Vec<Op> {
    // A workspace name in a path is percent-encoded (it holds a slash).
    let body_ws = ws;
    let ws = ws.replace('/', "%2F");
    let op = |method, doc_path, path: String, body: Option<serde_json::Value>, allowed| Op {
        method,
        doc_path,
        path,
        body,
        allowed,
    };
    let j = |v: serde_json::Value| Some(v);
    let s = |p: &str| p.to_string();
    let rego = "package tofuflow\ndeny contains msg if { false; msg := \"x\" }\n";
    vec![
        op("get", "/api/v1/agents", s("/api/v1/agents"), None, ALL),
        op("get", "/api/v1/me", s("/api/v1/me"), None, ALL),
        op("get", "/api/v1/runs", s("/api/v1/runs"), None, ALL),
        op(
            "get",
            "/api/v1/runs/{id}",
            format!("/api/v1/runs/{run}"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/runs/{id}/plan",
            format!("/api/v1/runs/{run}/plan"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/runs/{id}/logs",
            format!("/api/v1/runs/{run}/logs"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/runs/{id}/logs/stream",
            format!("/api/v1/runs/{ended}/logs/stream"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/workspaces",
            s("/api/v1/workspaces"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/workspaces/{workspace}/state",
            format!("/api/v1/workspaces/{ws}/state"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/workspaces/{workspace}/state/versions/{version}",
            format!("/api/v1/workspaces/{ws}/state/versions/1"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/workspaces/{workspace}/state/versions/{version}/content",
            format!("/api/v1/workspaces/{ws}/state/versions/1/content"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/environments",
            s("/api/v1/environments"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/schedules",
            s("/api/v1/schedules"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/schedules/{name}/ticks",
            s("/api/v1/schedules/sch/ticks"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/workflow-runs",
            s("/api/v1/workflow-runs"),
            None,
            ALL,
        ),
        op(
            "get",
            "/api/v1/workflow-runs/{id}",
            format!("/api/v1/workflow-runs/{wf}"),
            None,
            ALL,
        ),
        op("get", "/api/v1/audit", s("/api/v1/audit"), None, ADMIN),
        op(
            "get",
            "/api/v1/audit/verify",
            s("/api/v1/audit/verify"),
            None,
            ADMIN,
        ),
        op(
            "get",
            "/api/v1/policies",
            s("/api/v1/policies"),
            None,
            ADMIN,
        ),
        op(
            "get",
            "/api/v1/policies/{name}",
            s("/api/v1/policies/p"),
            None,
            ADMIN,
        ),
        op(
            "get",
            "/api/v1/webhooks",
            s("/api/v1/webhooks"),
            None,
            ADMIN,
        ),
        op(
            "get",
            "/api/v1/webhooks/{name}",
            s("/api/v1/webhooks/hook"),
            None,
            ADMIN,
        ),
        op(
            "post",
            "/api/v1/bundles",
            s("/api/v1/bundles"),
            None,
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/runs",
            s("/api/v1/runs"),
            j(
                serde_json::json!({"workspace": body_ws, "bundle_digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "kind": "plan_only"}),
            ),
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/runs/{id}/reject",
            format!("/api/v1/runs/{run}/reject"),
            j(serde_json::json!({"reason": "no"})),
            APPROVER,
        ),
        op(
            "post",
            "/api/v1/workspaces/{workspace}/drift-checks",
            format!("/api/v1/workspaces/{ws}/drift-checks"),
            j(serde_json::json!({})),
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/workspaces/{workspace}/state/lock",
            format!("/api/v1/workspaces/{ws}/state/lock"),
            j(serde_json::json!({})),
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/workspaces/{workspace}/state/unlock",
            format!("/api/v1/workspaces/{ws}/state/unlock"),
            j(serde_json::json!({})),
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/workspaces/{workspace}/state/rollback",
            format!("/api/v1/workspaces/{ws}/state/rollback"),
            j(serde_json::json!({"to_version": 1, "reason": "r"})),
            ADMIN,
        ),
        op(
            "put",
            "/api/v1/workspaces/{workspace}/ttl",
            format!("/api/v1/workspaces/{ws}/ttl"),
            j(serde_json::json!({"ttl_ms": 86_400_000})),
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/environments/{workspace}/extend",
            format!("/api/v1/environments/{ws}/extend"),
            j(serde_json::json!({"by_ms": 3_600_000})),
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/schedules",
            s("/api/v1/schedules"),
            j(serde_json::json!({"name": "sch2", "cron": "0 3 * * *", "workspace": body_ws})),
            ADMIN,
        ),
        op(
            "post",
            "/api/v1/policies",
            s("/api/v1/policies"),
            j(serde_json::json!({"name": "p2", "workspaces": "**", "source": rego})),
            ADMIN,
        ),
        op(
            "post",
            "/api/v1/webhooks",
            s("/api/v1/webhooks"),
            j(
                serde_json::json!({"name": "hook2", "url": "http://127.0.0.1:9/h", "workspaces": ["**"], "allow_private": true}),
            ),
            ADMIN,
        ),
        op(
            "post",
            "/api/v1/webhooks/{name}/test",
            s("/api/v1/webhooks/hook/test"),
            None,
            ADMIN,
        ),
        op(
            "post",
            "/api/v1/webhooks/{name}/disable",
            s("/api/v1/webhooks/hook/disable"),
            None,
            ADMIN,
        ),
        op(
            "post",
            "/api/v1/webhooks/{name}/enable",
            s("/api/v1/webhooks/hook/enable"),
            None,
            ADMIN,
        ),
        op(
            "post",
            "/api/v1/webhook-deliveries/{id}/redeliver",
            s("/api/v1/webhook-deliveries/1/redeliver"),
            None,
            ADMIN,
        ),
        op(
            "post",
            "/api/v1/workflow-runs",
            s("/api/v1/workflow-runs"),
            j(
                serde_json::json!({"definition": "stack \"app\" {\n  source = \"./app\"\n  workspace = \"roles/wf2\"\n}\n", "bundles": {"./app": "sha256:0000000000000000000000000000000000000000000000000000000000000000"}}),
            ),
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/workflow-runs/{id}/rollouts/{stack}/{action}",
            format!("/api/v1/workflow-runs/{wf}/rollouts/app/pause"),
            None,
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/workflow-runs/{id}/retry",
            format!("/api/v1/workflow-runs/{wf}/retry"),
            None,
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/workflow-runs/{id}/rollback",
            format!("/api/v1/workflow-runs/{wf}/rollback"),
            j(serde_json::json!({})),
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/workflow-runs/{id}/approve",
            format!("/api/v1/workflow-runs/{wf}/approve"),
            None,
            APPROVER,
        ),
        op(
            "post",
            "/api/v1/workflow-runs/{id}/cancel",
            format!("/api/v1/workflow-runs/{wf}/cancel"),
            None,
            OPERATOR,
        ),
        op(
            "post",
            "/api/v1/runs/{id}/approve",
            format!("/api/v1/runs/{run}/approve"),
            j(serde_json::json!({})),
            APPROVER,
        ),
        op(
            "post",
            "/api/v1/runs/{id}/cancel",
            format!("/api/v1/runs/{run}/cancel"),
            j(serde_json::json!({})),
            OPERATOR,
        ),
        op(
            "delete",
            "/api/v1/schedules/{name}",
            s("/api/v1/schedules/sch"),
            None,
            ADMIN,
        ),
        op(
            "delete",
            "/api/v1/policies/{name}",
            s("/api/v1/policies/p"),
            None,
            ADMIN,
        ),
        op(
            "delete",
            "/api/v1/webhooks/{name}",
            s("/api/v1/webhooks/hook"),
            None,
            ADMIN,
        ),
    ]
}

/// As admin: a state version (by a run that ended) and a run waiting for approval on `ws`, a
/// workflow run waiting for approval as a whole, a webhook, a policy and a schedule to act on.
async fn objects(c: &Cluster, admin: &str, ws: &str) -> (String, String, String) {
    let post = |path: &str, body: serde_json::Value| {
        let a = c.api(
            "POST",
            path,
            Some(admin),
            Some(("application/json", body.to_string().as_bytes())),
            &[],
        );
        assert!(
            a.status < 300,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        a.json()
    };
    let up = c.api(
        "POST",
        "/api/v1/bundles",
        Some(admin),
        Some(("application/gzip", &bundle())),
        &[],
    );
    let digest = up.json()["digest"].as_str().unwrap().to_string();
    let submit = |auto: bool| {
        post(
            "/api/v1/runs",
            serde_json::json!({"workspace": ws, "bundle_digest": digest, "variables": {"who": format!("roles-{auto}")}, "auto_approve": auto}),
        )["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let applied = submit(true);
    c.wait_state(&applied, &["applied"], T).await;
    let run = submit(false);
    c.wait_state(&run, &["awaiting_approval"], T).await;
    let wf = post(
        "/api/v1/workflow-runs",
        serde_json::json!({"definition": "workflow {\n  approval = \"once\"\n}\nstack \"app\" {\n  source = \"./app\"\n  workspace = \"roles/wf\"\n  inputs = { who = \"wf\" }\n}\n", "bundles": {"./app": digest}}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    post(
        "/api/v1/webhooks",
        serde_json::json!({"name": "hook", "url": "http://127.0.0.1:9/h", "workspaces": ["**"], "allow_private": true}),
    );
    post(
        "/api/v1/policies",
        serde_json::json!({"name": "p", "workspaces": "nothing/**", "source": "package tofuflow\n"}),
    );
    post(
        "/api/v1/schedules",
        serde_json::json!({"name": "sch", "cron": "0 3 * * *", "workspace": ws}),
    );
    (run, applied, wf)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_is_refused_to_each_role_that_may_not_do_it() {
    // A state key: webhooks' secrets are stored sealed.
    let mut c = Cluster::builder(Db::Sqlite)
        .coordinator_args(&[
            "--state-key",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ])
        .start()
        .await;
    c.agent(AgentOpts::default()).await;
    let admin = c.token.clone().unwrap();
    let ws = "roles/app";
    let (run, ended, wf) = objects(&c, &admin, ws).await;
    let mut tokens = Vec::new();
    for role in ALL {
        tokens.push((*role, c.user_token(&format!("u-{role}"), role).await));
    }
    let ops = operations(&run, &ended, &wf, ws);
    // The table covers the served document: a new route without a row fails here.
    let doc = c.api("GET", "/api/v1/openapi.json", None, None, &[]).json();
    let mut documented: Vec<String> = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for m in methods.as_object().unwrap().keys() {
            documented.push(format!("{m} {path}"));
        }
    }
    let mut tabled: Vec<String> = ops
        .iter()
        .map(|o| format!("{} {}", o.method, o.doc_path))
        .collect();
    documented.sort();
    tabled.sort();
    assert_eq!(tabled, documented, "every documented operation has a row");
    let mut refused = 0;
    for o in &ops {
        let body = o.body.as_ref().map(|b| b.to_string().into_bytes());
        let call = |token: &str| {
            c.api(
                &o.method.to_uppercase(),
                &o.path,
                Some(token),
                body.as_deref().map(|b| ("application/json", b)),
                &[],
            )
        };
        // Denials first, so an allowed call cannot change what they meet.
        for (role, token) in tokens.iter().filter(|(r, _)| !o.allowed.contains(r)) {
            let a = call(token);
            assert_eq!(
                a.status,
                403,
                "{role}: {} {}: {}",
                o.method,
                o.path,
                String::from_utf8_lossy(&a.body)
            );
            assert_eq!(
                a.header("content-type").as_deref(),
                Some("application/problem+json")
            );
            refused += 1;
        }
        for (role, token) in tokens.iter().filter(|(r, _)| o.allowed.contains(r)) {
            let a = call(token);
            assert!(
                a.status != 401 && a.status != 403,
                "{role} may {} {}: {} {}",
                o.method,
                o.path,
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
    }
    assert!(refused >= 60, "{refused} denials checked");
}
