//! What a delivery says, as pure functions: the body (`json`, or Slack-compatible `slack`) and
//! the signature header. A body holds the run's id, workspace, state, kind, who submitted it,
//! who made the transition, its tags, its page's URL and its plan's counts: never variables,
//! outputs, errors or logs (they may hold secrets).
//!
//! Signature (Stripe-style): `X-Tofuflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>" with the webhook's secret>`. A receiver recomputes it over the raw body, compares
//! in constant time, and refuses a `t` too far from its clock (replays).

use ring::hmac;
use std::collections::BTreeMap;

/// What a body is made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub delivery_id: String,
    pub event: String,
    pub at_ms: i64,
    pub run_id: String,
    pub workspace: String,
    pub state: String,
    pub kind: String,
    pub submitted_by: String,
    /// Who made the transition (an approver, an agent, the reaper).
    pub actor: String,
    pub tags: BTreeMap<String, String>,
    /// The run's page in the web UI.
    pub url: String,
    pub add: i64,
    pub change: i64,
    pub destroy: i64,
    pub has_changes: bool,
}

/// The body of a delivery about a run, in `format` (`json` or `slack`).
pub fn render(format: &str, f: &Facts) -> String {
    let v = if format == "slack" {
        slack(f)
    } else {
        serde_json::json!({
            "delivery_id": f.delivery_id,
            "event": f.event,
            "at_unix_ms": f.at_ms,
            "run": {
                "id": f.run_id,
                "workspace": f.workspace,
                "state": f.state,
                "kind": f.kind,
                "submitted_by": f.submitted_by,
                "actor": f.actor,
                "tags": f.tags,
                "url": f.url,
                "plan": {"add": f.add, "change": f.change, "destroy": f.destroy, "has_changes": f.has_changes},
            },
        })
    };
    v.to_string()
}

/// The body of a test delivery for webhook `name`.
pub fn render_test(format: &str, name: &str, delivery_id: &str, at_ms: i64) -> String {
    let text = format!("tofuflow: a test notification for webhook {name}");
    let v = if format == "slack" {
        serde_json::json!({
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": escape(&text)}}],
        })
    } else {
        serde_json::json!({"delivery_id": delivery_id, "event": "test", "at_unix_ms": at_ms, "webhook": name, "message": text})
    };
    v.to_string()
}

/// Slack's `{"text", "blocks"}`: `text` is the notification's plain line, the blocks a
/// section with a link to the run and a context line.
fn slack(f: &Facts) -> serde_json::Value {
    let counts = format!("+{} ~{} -{}", f.add, f.change, f.destroy);
    let what = f.event.replace('_', " ");
    let text = format!(
        "tofuflow: run {} on {} {what} ({counts})",
        f.run_id, f.workspace
    );
    let mut section = format!(
        "*<{}|run {}>* on `{}`: *{}*\nplan: {counts} · submitted by {}",
        f.url,
        escape(&f.run_id),
        escape(&f.workspace),
        escape(&what),
        escape(&f.submitted_by)
    );
    if !f.actor.is_empty() && f.actor != f.submitted_by {
        section.push_str(&format!(" · by {}", escape(&f.actor)));
    }
    let tags: Vec<String> = f
        .tags
        .iter()
        .map(|(k, v)| format!("`{}={}`", escape(k), escape(v)))
        .collect();
    let mut context = format!("event `{}` · delivery `{}`", f.event, f.delivery_id);
    if !tags.is_empty() {
        context.push_str(&format!(" · {}", tags.join(" ")));
    }
    serde_json::json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": section}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    })
}

/// What a body about an environment with a TTL (`ttl_near`, `teardown_failed`) is made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvFacts {
    pub delivery_id: String,
    pub event: String,
    pub at_ms: i64,
    pub workspace: String,
    pub state: String,
    pub expires_ms: i64,
    pub set_by: String,
    pub source_run: String,
    pub destroy_run: String,
    pub attempts: i64,
}

/// The body of a delivery about an environment, in `format` (`json` or `slack`).
pub fn render_env(format: &str, f: &EnvFacts) -> String {
    let v = if format == "slack" {
        let text = match f.event.as_str() {
            "ttl_near" => format!(
                "tofuflow: environment {} expires at unix ms {}: extend it with `tofuflow env extend {} --by 2h`",
                f.workspace, f.expires_ms, f.workspace
            ),
            _ => format!(
                "tofuflow: environment {} could not be torn down after {} attempts (last destroy run {}): it still exists",
                f.workspace, f.attempts, f.destroy_run
            ),
        };
        serde_json::json!({
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": escape(&text)}}],
        })
    } else {
        serde_json::json!({
            "delivery_id": f.delivery_id,
            "event": f.event,
            "at_unix_ms": f.at_ms,
            "environment": {
                "workspace": f.workspace,
                "state": f.state,
                "expires_unix_ms": f.expires_ms,
                "set_by": f.set_by,
                "source_run": f.source_run,
                "destroy_run": f.destroy_run,
                "attempts": f.attempts,
            },
        })
    };
    v.to_string()
}

/// Slack's mrkdwn escaping: `&`, `<` and `>` (the link syntax) as entities.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `X-Tofuflow-Signature` value of `body` sent at `t` (unix seconds).
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(tag.as_ref()))
}

/// Checks a signature header as a receiver does: a `v1` that matches (constant time) and a
/// `t` within `tolerance_s` of `now_s`.
pub fn verify(secret: &str, header: &str, body: &str, now_s: i64, tolerance_s: i64) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now_s - t).abs() > tolerance_s {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let signed = format!("{t}.{body}");
    sigs.iter()
        .any(|s| hmac::verify(&key, signed.as_bytes(), s).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            delivery_id: "whd_1".into(),
            event: "needs_approval".into(),
            at_ms: 1_000,
            run_id: "r-1".into(),
            workspace: "ml/a".into(),
            state: "awaiting_approval".into(),
            kind: "plan_and_apply".into(),
            submitted_by: "alice".into(),
            actor: "agent-1".into(),
            tags: BTreeMap::from([("team".into(), "<ml>".into())]),
            url: "https://tf.example/ui/#/runs/r-1".into(),
            add: 2,
            change: 1,
            destroy: 0,
            has_changes: true,
        }
    }

    #[test]
    fn the_json_body_holds_the_run_and_its_counts() {
        let v: serde_json::Value = serde_json::from_str(&render("json", &facts())).unwrap();
        assert_eq!(v["event"], "needs_approval");
        assert_eq!(v["run"]["workspace"], "ml/a");
        assert_eq!(v["run"]["plan"]["add"], 2);
        assert_eq!(v["run"]["tags"]["team"], "<ml>");
        assert_eq!(v["run"]["url"], "https://tf.example/ui/#/runs/r-1");
    }

    #[test]
    fn the_slack_body_has_text_and_escaped_blocks() {
        let v: serde_json::Value = serde_json::from_str(&render("slack", &facts())).unwrap();
        assert!(v["text"]
            .as_str()
            .unwrap()
            .contains("needs approval (+2 ~1 -0)"));
        let section = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(section.starts_with("*<https://tf.example/ui/#/runs/r-1|run r-1>*"));
        assert_eq!(v["blocks"][1]["type"], "context");
        let ctx = v["blocks"][1]["elements"][0]["text"].as_str().unwrap();
        assert!(ctx.contains("`team=&lt;ml&gt;`"), "{ctx}");
    }

    #[test]
    fn a_signature_verifies_with_its_secret_only_and_within_the_tolerance() {
        let h = signature("s3cret", 1_700_000_000, "{\"a\":1}");
        assert!(h.starts_with("t=1700000000,v1="));
        assert!(verify("s3cret", &h, "{\"a\":1}", 1_700_000_100, 300));
        assert!(!verify("other", &h, "{\"a\":1}", 1_700_000_100, 300));
        assert!(!verify("s3cret", &h, "{\"a\":2}", 1_700_000_100, 300));
        assert!(!verify("s3cret", &h, "{\"a\":1}", 1_700_001_000, 300));
        // printf '%s' '0.x' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature("key", 0, "x"),
            "t=0,v1=01648d624c0b511b0449a63394418e2d5b018e4cc2f753e42127d445f3ca5dd0"
        );
    }
}
