//! Signed task messages on both databases: every queued attempt has one current envelope,
//! granted once; an envelope that expires unclaimed is signed again; shared keys are sealed at
//! rest and rotate with an overlap; without a state key the private key never reaches a table.

use super::*;
use crate::lifecycle::ClaimOutcome;
use tofuflow_proto::signing;

fn key(byte: u8) -> crypt::Key {
    let b64 = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    crypt::Key::from_base64(&b64).unwrap()
}

fn state_key() -> crypt::Keys {
    crypt::Keys {
        current: Some(key(7)),
        old: vec![],
    }
}

/// Checks a queued message's signature with the keys the store lists for agents.
async fn verify(st: &Store, payload: &[u8]) -> Result<v1::TaskEnvelope, signing::Rejection> {
    let signed = v1::SignedEnvelope::decode(payload).unwrap();
    let keys = st.signing_public_keys().await.unwrap();
    let key = keys.iter().find(|k| k.key_id == signed.key_id);
    signing::verify(&signed, key, now_ms())
}

#[tokio::test]
async fn only_the_current_envelope_is_granted_and_only_once() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        st.submit(new_run("w", false), &p).await.unwrap();
        let row = &st.unsent(1).await.unwrap()[0];
        let env = opened(&row.payload);
        assert_eq!(
            verify(&st, &row.payload).await.unwrap().task_id,
            env.task_id
        );
        let forged = st.claim("a1", &env.task_id, 1, "forged-id", &p).await;
        assert!(matches!(forged, Ok(ClaimOutcome::Replayed(_))), "{name}");
        let ok = st.claim("a1", &env.task_id, 1, &env.id, &p).await.unwrap();
        assert!(ok.granted().is_some(), "{name}");
        match st.claim("a2", &env.task_id, 1, &env.id, &p).await.unwrap() {
            ClaimOutcome::Replayed(why) => assert!(why.contains("already claimed"), "{why}"),
            _ => panic!("{name}: a claimed envelope presented again is a replay"),
        }
    }
}

#[tokio::test]
async fn an_envelope_that_expires_unclaimed_is_signed_and_queued_again() {
    for (name, mut st, _g, _d) in stores().await {
        let p = policy();
        st.set_signing(0, DEFAULT_KEY_ROTATION_MS); // born expired
        st.submit(new_run("w", false), &p).await.unwrap();
        let first =
            v1::SignedEnvelope::decode(st.unsent(1).await.unwrap()[0].payload.as_slice()).unwrap();
        assert_eq!(
            verify(&st, &st.unsent(1).await.unwrap()[0].payload)
                .await
                .unwrap_err()
                .reason(),
            "expired"
        );
        st.set_signing(DEFAULT_ENVELOPE_TTL_MS, DEFAULT_KEY_ROTATION_MS);
        let did = st.reap(&p).await.unwrap();
        assert!(
            did.iter().any(|d| d.contains("signed and queued again")),
            "{name}: {did:?}"
        );
        let rows = st.unsent(10).await.unwrap();
        assert_eq!(rows.len(), 1, "{name}: the expired message is superseded");
        let again = opened(&rows[0].payload);
        assert_ne!(again.id, first.envelope_id);
        assert!(verify(&st, &rows[0].payload).await.is_ok());
        let old = st
            .claim("a1", &again.task_id, 1, &first.envelope_id, &p)
            .await;
        assert!(matches!(old, Ok(ClaimOutcome::Replayed(_))), "{name}");
        let new = st.claim("a1", &again.task_id, 1, &again.id, &p).await;
        assert!(new.unwrap().granted().is_some(), "{name}");
        assert!(st.reap(&p).await.unwrap().is_empty(), "{name}: once");
    }
}

#[tokio::test]
async fn shared_keys_are_sealed_and_rotate_with_an_overlap() {
    for (name, mut st, _g, _d) in stores().await {
        let p = policy();
        st.set_keys(state_key(), 0).await.unwrap();
        st.set_signing(DEFAULT_ENVELOPE_TTL_MS, 0); // every rotation is due
        let k1 = st.rotate_signing_keys().await.unwrap().expect("first key");
        let row = sqlx::query("SELECT sealed_private_key FROM signing_keys WHERE id = $1")
            .bind(&k1)
            .fetch_one(&st.pool)
            .await
            .unwrap();
        let sealed: Vec<u8> = row.try_get("sealed_private_key").unwrap();
        assert!(
            crypt::key_id_of(&sealed).is_some(),
            "{name}: sealed at rest"
        );
        st.submit(new_run("w1", false), &p).await.unwrap();
        let before = st.unsent(1).await.unwrap()[0].payload.clone();
        let k2 = st.rotate_signing_keys().await.unwrap().expect("rotated");
        let keys = st.signing_public_keys().await.unwrap();
        let ids: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
        assert_eq!(ids, [k2.as_str(), k1.as_str()], "{name}: newest first");
        assert_eq!(keys[0].verify_until_ms, 0, "{name}: the active key");
        let overlap = keys[1].verify_until_ms - now_ms();
        assert!(
            overlap > DEFAULT_ENVELOPE_TTL_MS - 60_000 && overlap <= DEFAULT_ENVELOPE_TTL_MS,
            "{name}: the old key verifies until its last envelope expires ({overlap} ms)"
        );
        assert!(verify(&st, &before).await.is_ok(), "{name}: overlap");
        st.submit(new_run("w2", false), &p).await.unwrap();
        let rows = st.unsent(10).await.unwrap();
        let after = v1::SignedEnvelope::decode(rows[1].payload.as_slice()).unwrap();
        assert_eq!(after.key_id, k2, "{name}: signed with the new key");
        // A retired key whose envelopes have all expired is forgotten.
        st.set_signing(-1, 0);
        st.rotate_signing_keys()
            .await
            .unwrap()
            .expect("rotated again");
        st.set_signing(DEFAULT_ENVELOPE_TTL_MS, DEFAULT_KEY_ROTATION_MS);
        assert!(st.rotate_signing_keys().await.unwrap().is_none(), "not due");
        let ids: Vec<String> = st
            .signing_public_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        assert!(!ids.contains(&k2), "{name}: {ids:?}");
        assert!(ids.contains(&k1), "{name}: still in its overlap: {ids:?}");
        assert_eq!(ids.len(), 2, "{name}: {ids:?}");
    }
}

#[tokio::test]
async fn a_state_key_rotation_seals_the_signing_keys_again() {
    for (name, mut st, _g, _d) in stores().await {
        st.set_keys(state_key(), 0).await.unwrap();
        st.rotate_signing_keys().await.unwrap().expect("first key");
        let rotated = crypt::Keys {
            current: Some(key(8)),
            old: vec![key(7)],
        };
        assert!(st.set_keys(rotated, 0).await.unwrap() >= 1, "{name}");
        let only_new = crypt::Keys {
            current: Some(key(8)),
            old: vec![],
        };
        st.set_keys(only_new, 0).await.unwrap();
        st.submit(new_run("w", false), &policy()).await.unwrap();
        let row = &st.unsent(1).await.unwrap()[0];
        assert!(verify(&st, &row.payload).await.is_ok(), "{name}");
    }
}

#[tokio::test]
async fn without_a_state_key_only_the_public_half_is_stored() {
    for (name, st, _g, _d) in stores().await {
        st.submit(new_run("w", false), &policy()).await.unwrap();
        st.submit(new_run("w2", false), &policy()).await.unwrap();
        let rows =
            sqlx::query("SELECT sealed_private_key, active, verify_until_ms FROM signing_keys")
                .fetch_all(&st.pool)
                .await
                .unwrap();
        assert_eq!(rows.len(), 1, "{name}: one key for this process");
        let private: Vec<u8> = rows[0].try_get("sealed_private_key").unwrap();
        assert!(private.is_empty(), "{name}: no private key in a table");
        let until = i(&rows[0], "verify_until_ms").unwrap() - now_ms();
        let lifetime = DEFAULT_KEY_ROTATION_MS + DEFAULT_ENVELOPE_TTL_MS;
        assert!(until > lifetime - 60_000 && until <= lifetime, "{name}");
        for row in st.unsent(10).await.unwrap() {
            assert!(verify(&st, &row.payload).await.is_ok(), "{name}");
        }
    }
}

#[test]
fn rotation_is_due_after_one_period() {
    assert!(!rotation_due(1_000, 1_999, 1_000));
    assert!(rotation_due(1_000, 2_000, 1_000));
}
