//! One store suite, run against SQLite and against the machine's real PostgreSQL (a fresh
//! database per test, dropped afterwards), split by aggregate; the helpers every part uses.

use super::*;
use prost::Message;
use tofuflow_proto::v1;

mod audit;
mod connections;
mod environments;
mod events;
mod invariants;
mod leases;
mod oidc;
mod policies;
mod retention;
mod runs;
mod signing;
mod state;
mod webhooks;

/// A task message from the outbox: its envelope, checked against its signature, and its id.
struct Opened {
    envelope: v1::TaskEnvelope,
    id: String,
}

impl std::ops::Deref for Opened {
    type Target = v1::TaskEnvelope;
    fn deref(&self) -> &v1::TaskEnvelope {
        &self.envelope
    }
}

fn opened(payload: &[u8]) -> Opened {
    let signed = v1::SignedEnvelope::decode(payload).expect("a SignedEnvelope");
    assert!(signed.expires_unix_ms > now_ms(), "signed to expire later");
    Opened {
        envelope: v1::TaskEnvelope::decode(signed.envelope.as_slice()).expect("a TaskEnvelope"),
        id: signed.envelope_id,
    }
}

fn policy() -> Policy {
    Policy {
        lease_ttl_ms: 60_000,
        agent_credential_ttl_ms: 86_400_000,
        max_plan_attempts: 3,
        queue_timeout_ms: 3_600_000,
        approval_timeout_ms: 3_600_000,
        plan_policy_timeout_ms: 2_000,
        log_retention_ms: 0,
    }
}

fn new_run(ws: &str, auto: bool) -> NewRun {
    NewRun {
        limits: Default::default(),
        variable_decls: Default::default(),
        workspace: ws.into(),
        pool: "default".into(),
        kind: RunKind::PlanAndApply,
        bundle_digest: "sha256:b".into(),
        variables: BTreeMap::from([("gpus".into(), "4".into())]),
        var_files: vec![("x.tfvars".into(), b"a = 1".to_vec())],
        auto_approve: auto,
        actor: "alice".into(),
        commit: "abc".into(),
        pipeline_id: "p1".into(),
        source: String::new(),
        traceparent: String::new(),
        tags: BTreeMap::from([("dag_id".into(), "nightly".into())]),
        idempotency: None,
        env: Default::default(),
        ttl_ms: 0,
    }
}

/// A PostgreSQL database that exists for one test.
struct PgDb {
    admin: String,
    name: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                }
            })
        })
        .join();
    }
}

/// Another store on the same database, as a second coordinator has (SQLite: the same store,
/// one process).
async fn second_store(st: &Store, pg: &Option<PgDb>) -> Store {
    match pg {
        Some(db) => {
            let url = format!("{}/{}", db.admin.rsplit_once('/').unwrap().0, db.name);
            Store::connect(&url).await.unwrap()
        }
        None => st.clone(),
    }
}

async fn stores() -> Vec<(&'static str, Store, Option<PgDb>, tempdir::Dir)> {
    use sqlx::Connection;
    let dir = tempdir::Dir::new();
    let sqlite = Store::connect(&format!("sqlite://{}/t.db", dir.path()))
        .await
        .unwrap();
    let admin = std::env::var("TOFUFLOW_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("tofuflow_store_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL must be running for the store suite (see README: Tests)");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut c)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let pg = Store::connect(&url).await.unwrap();
    let guard = PgDb { admin, name };
    // The agents the tests claim as, registered for the pool their runs use.
    for st in [&sqlite, &pg] {
        for a in ["a0", "a1", "a2", "a3"] {
            st.register_agent(&NewAgent {
                id: a,
                name: a,
                pools: &["default".into()],
                labels: &BTreeMap::new(),
                capacity: 1,
                secret_sha256: &sha256_hex(a.as_bytes()),
                credential_expires_ms: 0,
            })
            .await
            .unwrap();
        }
    }
    vec![
        ("sqlite", sqlite, None, dir),
        ("postgres", pg, Some(guard), tempdir::Dir::new()),
    ]
}

mod tempdir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir()
                .join(format!("tofuflow-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> String {
            self.0.display().to_string()
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The lease a grant gives, as its agent presents it.
fn proof(g: &ClaimGrant) -> LeaseProof<'_> {
    LeaseProof {
        task_id: &g.task.id,
        attempt: g.task.attempt,
        epoch: g.epoch,
        agent_id: &g.task.agent_id,
        token: &g.lease_token,
    }
}

fn complete(
    t: &Task,
    epoch: i64,
    token: &str,
    outcome: v1::Outcome,
    changes: bool,
) -> crate::runs::TaskReport {
    crate::runs::TaskReport {
        agent_id: t.agent_id.clone(),
        lease_token: token.into(),
        task_id: t.id.clone(),
        attempt: t.attempt,
        epoch,
        outcome: match outcome {
            v1::Outcome::Succeeded => crate::runs::TaskOutcome::Succeeded,
            v1::Outcome::Cancelled => crate::runs::TaskOutcome::Cancelled,
            _ => crate::runs::TaskOutcome::Failed,
        },
        has_changes: changes,
        summary: crate::runs::ChangeSummary {
            add: 2,
            change: 0,
            destroy: 0,
        },
        outputs_json: "{\"a\":{\"value\":1}}".into(),
        error: String::new(),
        exit_code: 0,
        limit_hit: String::new(),
    }
}
