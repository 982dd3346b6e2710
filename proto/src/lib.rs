//! The tofuflow wire contract: gRPC services for agents and users, the AMQP `TaskEnvelope`, the
//! protocol version, and W3C trace-context helpers for AMQP headers and gRPC metadata.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("tofuflow.v1");
}

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod audit;
pub mod auth;
pub mod connections;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod names;
#[cfg(feature = "policy")]
pub mod policy;
#[cfg(feature = "signing")]
pub mod signing;
#[cfg(feature = "telemetry")]
pub mod telemetry;
pub mod tls;
#[cfg(feature = "workflow")]
pub mod workflow;

/// Bumped on any incompatible change; checked on register, heartbeat and every task envelope.
/// 3: task messages are `SignedEnvelope`s and claims name the envelope id.
pub const PROTOCOL_VERSION: u32 = 3;

/// The gRPC metadata key of the HTTP status every error the coordinator itself answers with
/// carries (the HTTP API uses it; the CLI tells "the coordinator answered" from "it could not
/// be reached" by it).
pub const HTTP_STATUS_KEY: &str = "tofuflow-http-status";

/// Largest gRPC message either side accepts (artifacts and logs are streamed in chunks below it).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Chunk size used for streaming blobs.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The AMQP `message_id` of a task attempt: `<task_id>:<attempt>`.
pub fn message_id(task_id: &str, attempt: u32) -> String {
    format!("{task_id}:{attempt}")
}

/// Parses a `message_id` back into task id and attempt.
pub fn parse_message_id(id: &str) -> Option<(String, u32)> {
    let (t, a) = id.rsplit_once(':')?;
    Some((t.to_string(), a.parse().ok()?))
}

/// Creates a new W3C `traceparent` (version 00, sampled).
pub fn new_traceparent(trace_id: [u8; 16], span_id: [u8; 8]) -> String {
    format!("00-{}-{}-01", hex(&trace_id), hex(&span_id))
}

/// Checks a `traceparent` value's shape (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn valid_traceparent(tp: &str) -> bool {
    let p: Vec<&str> = tp.split('-').collect();
    p.len() == 4
        && p[0].len() == 2
        && p[1].len() == 32
        && p[2].len() == 16
        && p[3].len() == 2
        && p.iter().all(|x| x.chars().all(|c| c.is_ascii_hexdigit()))
        && p[1] != "00000000000000000000000000000000"
}

/// A child `traceparent`: same trace, new span id.
pub fn child_traceparent(parent: &str, span_id: [u8; 8]) -> Option<String> {
    if !valid_traceparent(parent) {
        return None;
    }
    let p: Vec<&str> = parent.split('-').collect();
    Some(format!("00-{}-{}-{}", p[1], hex(&span_id), p[3]))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl std::fmt::Display for v1::Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            v1::Phase::Plan => "plan",
            v1::Phase::Apply => "apply",
            v1::Phase::Unspecified => "unspecified",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn message_ids_round_trip() {
        let id = message_id("0193-abc", 3);
        assert_eq!(parse_message_id(&id), Some(("0193-abc".into(), 3)));
        assert_eq!(parse_message_id("garbage"), None);
    }

    #[test]
    fn traceparent_shapes() {
        let tp = new_traceparent([1; 16], [2; 8]);
        assert!(valid_traceparent(&tp));
        let child = child_traceparent(&tp, [3; 8]).unwrap();
        assert_eq!(&child[3..35], &tp[3..35]);
        assert!(!valid_traceparent(
            "00-00000000000000000000000000000000-0202020202020202-01"
        ));
        assert!(!valid_traceparent("nope"));
    }

    #[test]
    fn envelope_round_trips_and_rejects_garbage() {
        let e = v1::TaskEnvelope {
            protocol_version: PROTOCOL_VERSION,
            task_id: "t".into(),
            attempt: 2,
            run_id: "r".into(),
            phase: v1::Phase::Plan as i32,
            pool: "gpu".into(),
            workspace: "ml/a100".into(),
            bundle_digest: "sha256:x".into(),
            deadline_unix_ms: 1,
        };
        let b = e.encode_to_vec();
        assert_eq!(v1::TaskEnvelope::decode(b.as_slice()).unwrap(), e);
        assert!(v1::TaskEnvelope::decode(&b"\xff\xff\xff"[..]).is_err());
    }
}
