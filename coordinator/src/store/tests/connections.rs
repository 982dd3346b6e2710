//! Connections on both databases: values sealed (never in clear in a table), granted at claim
//! to tasks of matching workspaces only (the most specific glob's key wins), rotation taken
//! by the next claim with older values erased, a deleted connection gone, and no connection
//! stored without a state key.

use super::*;
use crate::lifecycle::ClaimOutcome;

const SECRET: &str = "s3cr3t-value-0f-the-ml-team";
const ROTATED: &str = "r0tated-value-0f-the-ml-team";

fn keys() -> crypt::Keys {
    let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    crypt::Keys {
        current: Some(crypt::Key::from_base64(&b64).unwrap()),
        old: vec![],
    }
}

fn conn(name: &str, globs: &[&str]) -> Connection {
    Connection {
        name: name.into(),
        workspaces: globs.iter().map(|g| g.to_string()).collect(),
        ..Connection::default()
    }
}

fn values(pairs: &[(&str, &str)]) -> ConnectionValues {
    ConnectionValues {
        env: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ConnectionValues::default()
    }
}

/// Submits a run of `ws` and claims its plan; the connections the grant carries.
async fn granted(st: &Store, ws: &str) -> Vec<GrantedConnection> {
    let p = policy();
    st.submit(new_run(ws, false), &p).await.unwrap();
    let rows = st.unsent(100).await.unwrap();
    let env = opened(&rows.last().unwrap().payload);
    match st.claim("a1", &env.task_id, 1, &env.id, &p).await.unwrap() {
        ClaimOutcome::Granted(g) => g.connections,
        _ => panic!("claim of {ws} refused"),
    }
}

/// Every byte stored in the connection tables, as text.
async fn stored_bytes(st: &Store) -> String {
    let mut all = String::new();
    for t in ["connections", "connection_versions"] {
        for r in sqlx::query(&format!("SELECT * FROM {t}"))
            .fetch_all(&st.pool)
            .await
            .unwrap()
        {
            for c in 0..r.len() {
                if let Ok(v) = r.try_get::<Vec<u8>, _>(c) {
                    all.push_str(&String::from_utf8_lossy(&v));
                } else if let Ok(v) = r.try_get::<String, _>(c) {
                    all.push_str(&v);
                }
            }
        }
    }
    all
}

#[tokio::test]
async fn connections_reach_matching_workspaces_sealed_rotated_and_deleted() {
    for (name, mut st, _g, _d) in stores().await {
        st.set_keys(keys(), 0).await.unwrap();
        let set = st
            .set_connection(
                &conn("ml", &["ml/*"]),
                &values(&[("API_TOKEN", SECRET)]),
                "alice",
            )
            .await
            .unwrap();
        assert_eq!(set.version, 1, "{name}");
        let g = granted(&st, "ml/a").await;
        assert_eq!(g.len(), 1, "{name}");
        assert_eq!(g[0].values.env["API_TOKEN"], SECRET, "{name}");
        assert!(
            granted(&st, "prod/a").await.is_empty(),
            "{name}: not prod/a"
        );
        assert!(!stored_bytes(&st).await.contains(SECRET), "{name}: sealed");

        let r = st
            .rotate_connection("ml", &values(&[("API_TOKEN", ROTATED)]), &[], "bob")
            .await
            .unwrap();
        assert_eq!((r.version, r.versions.len()), (2, 2), "{name}");
        let g = granted(&st, "ml/b").await;
        assert_eq!(
            (g[0].version, g[0].values.env["API_TOKEN"].as_str()),
            (2, ROTATED),
            "{name}"
        );
        let erased = sqlx::query("SELECT sealed_values FROM connection_versions WHERE version = 1")
            .fetch_one(&st.pool)
            .await
            .unwrap()
            .try_get::<Vec<u8>, _>("sealed_values")
            .unwrap();
        assert!(
            erased.is_empty(),
            "{name}: the old version's values are erased"
        );
        let used = st.connection("ml").await.unwrap();
        assert!(used.last_used_ms > 0, "{name}");
        let reads = st
            .audit_entries(&AuditFilter {
                kind: Some(crate::audit::AuditKind::ConnectionRead),
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            reads.len(),
            2,
            "{name}: one audit entry per task that read it"
        );

        st.delete_connection("ml", "alice").await.unwrap();
        assert!(stored_bytes(&st).await.is_empty(), "{name}: nothing left");
        assert!(granted(&st, "ml/c").await.is_empty(), "{name}");
        assert!(
            matches!(st.connection("ml").await, Err(Error::NotFound(_))),
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_most_specific_glob_wins_a_shared_key() {
    for (name, mut st, _g, _d) in stores().await {
        st.set_keys(keys(), 0).await.unwrap();
        let v = |s: &str| values(&[("REGION_TOKEN", s)]);
        st.set_connection(&conn("all", &["**"]), &v("token-for-everyone"), "a")
            .await
            .unwrap();
        st.set_connection(&conn("ml", &["ml/*"]), &v("token-for-the-ml-team"), "a")
            .await
            .unwrap();
        let g = granted(&st, "ml/x").await;
        let names: Vec<&str> = g.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["all", "ml"],
            "{name}: less specific first, so ml's key wins"
        );
        assert_eq!(
            st.connections(Some("prod/x")).await.unwrap().len(),
            1,
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_apply_only_connection_is_not_given_to_plans() {
    for (name, mut st, _g, _d) in stores().await {
        st.set_keys(keys(), 0).await.unwrap();
        let mut c = conn("writer", &["**"]);
        c.phases = vec![Phase::Apply];
        st.set_connection(&c, &values(&[("WRITE_TOKEN", SECRET)]), "a")
            .await
            .unwrap();
        assert!(
            granted(&st, "w/plan").await.is_empty(),
            "{name}: plans get nothing"
        );
        let p = policy();
        let run = st.submit(new_run("w/auto", true), &p).await.unwrap();
        let env = opened(&st.unsent(100).await.unwrap().last().unwrap().payload);
        let g = st
            .claim("a1", &env.task_id, 1, &env.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        let report = complete(
            &g.task,
            g.epoch,
            &g.lease_token,
            v1::Outcome::Succeeded,
            true,
        );
        st.complete_task(&report, &p).await.unwrap();
        let rows = st.unsent(100).await.unwrap();
        let apply = rows
            .iter()
            .map(|r| opened(&r.payload))
            .find(|e| e.run_id == run.id && e.phase == v1::Phase::Apply as i32)
            .expect("the apply is queued");
        let g = st
            .claim("a2", &apply.task_id, 1, &apply.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        assert_eq!(g.connections.len(), 1, "{name}: the apply gets it");
    }
}

#[tokio::test]
async fn no_connection_is_stored_without_a_state_key_and_bad_values_are_refused() {
    for (name, st, _g, _d) in stores().await {
        let e = st
            .set_connection(&conn("x", &["**"]), &values(&[("TOKEN", SECRET)]), "a")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("--state-key"), "{name}: {e}");
        let e = st
            .set_connection(&conn("x", &["**"]), &values(&[("TOKEN", "short")]), "a")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("--plain TOKEN"), "{name}: {e}");
        assert!(stored_bytes(&st).await.is_empty(), "{name}");
    }
}
