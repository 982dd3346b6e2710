//! ID tokens on both databases: a claim mints a token signed with a key the JWKS lists, with
//! the audience of the workspace's most specific identity configuration, and records it; shared
//! keys are sealed at rest and rotate with an overlap; without a state key no private key
//! reaches a table.

use super::*;
use crate::oidc::identities::IdentityFields;
use crate::oidc::{Identity, IdentityName, OidcConfig};

fn state_key() -> crypt::Keys {
    let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    crypt::Keys {
        current: Some(crypt::Key::from_base64(&b64).unwrap()),
        old: vec![],
    }
}

fn identity(name: &str, glob: &str, audience: &str) -> Identity {
    let f = IdentityFields {
        name: name.into(),
        workspaces: glob.into(),
        audience: audience.into(),
        aws_role_arn: "arn:aws:iam::123456789012:role/tofu".into(),
        ..Default::default()
    };
    Identity::check(&f, "admin", now_ms()).unwrap()
}

/// The claims of a JWT, unverified (the e2e tests verify signatures against the JWKS).
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_claim_mints_a_recorded_token_with_the_most_specific_audience() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        st.set_identity(&identity("all", "**", "everyone"))
            .await
            .unwrap();
        st.set_identity(&identity("ml", "ml/*", "sts.amazonaws.com"))
            .await
            .unwrap();
        st.submit(new_run("ml/a", false), &p).await.unwrap();
        let env = opened(&st.unsent(1).await.unwrap()[0].payload);
        let g = st.claim("a1", &env.task_id, 1, &env.id, &p).await.unwrap();
        let g = g.granted().expect("granted");
        let c = claims(&g.identity.token);
        assert_eq!(c["aud"], "sts.amazonaws.com", "{name}");
        assert_eq!(c["sub"], "workspace:ml/a:run_phase:plan", "{name}");
        assert_eq!(
            g.identity.aws_role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/tofu")
        );
        let kids: Vec<String> = st
            .oidc_public_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.kid)
            .collect();
        let header = g.identity.token.split('.').next().unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        assert!(
            kids.iter().any(|k| header["kid"] == k.as_str()),
            "{name}: kid in the JWKS"
        );
        let mut c2 = st.pool.acquire().await.unwrap();
        let w = latest_id_token(&mut c2, &env.task_id, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            w.expires_ms / 1000,
            c["exp"].as_i64().unwrap(),
            "{name}: recorded"
        );
        drop(c2);
        let gone = st
            .delete_identity(&IdentityName::parse("ml").unwrap())
            .await
            .unwrap();
        assert_eq!(gone.workspaces.as_str(), "ml/*");
        assert_eq!(st.identities().await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn shared_id_token_keys_are_sealed_and_rotate_with_an_overlap() {
    for (name, mut st, _g, _d) in stores().await {
        st.set_keys(state_key(), 0).await.unwrap();
        st.set_oidc(OidcConfig {
            rotation_ms: 0, // every rotation is due
            ..Default::default()
        });
        let k1 = st.rotate_oidc_keys().await.unwrap().expect("first key");
        let row = sqlx::query("SELECT sealed_private_key FROM oidc_keys WHERE id = $1")
            .bind(&k1)
            .fetch_one(&st.pool)
            .await
            .unwrap();
        let sealed: Vec<u8> = row.try_get("sealed_private_key").unwrap();
        assert!(
            crypt::key_id_of(&sealed).is_some(),
            "{name}: sealed at rest"
        );
        let k2 = st.rotate_oidc_keys().await.unwrap().expect("rotated");
        let kids: Vec<String> = st
            .oidc_public_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(
            kids,
            [k2.clone(), k1.clone()],
            "{name}: both listed, newest first"
        );
        let until = sqlx::query("SELECT verify_until_ms FROM oidc_keys WHERE id = $1")
            .bind(&k1)
            .fetch_one(&st.pool)
            .await
            .unwrap();
        let overlap = i(&until, "verify_until_ms").unwrap() - now_ms();
        let ttl = crate::oidc::DEFAULT_TOKEN_TTL_MS;
        assert!(
            overlap > ttl - 60_000 && overlap <= ttl,
            "{name}: {overlap} ms"
        );
    }
}

#[tokio::test]
async fn without_a_state_key_no_private_key_is_stored() {
    for (name, st, _g, _d) in stores().await {
        st.rotate_oidc_keys()
            .await
            .unwrap()
            .expect("a key of this process");
        let rows = sqlx::query("SELECT sealed_private_key, verify_until_ms FROM oidc_keys")
            .fetch_all(&st.pool)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{name}");
        let sealed: Vec<u8> = rows[0].try_get("sealed_private_key").unwrap();
        assert!(sealed.is_empty(), "{name}: only the public half");
        assert!(
            i(&rows[0], "verify_until_ms").unwrap() > now_ms(),
            "{name}: lapses by itself"
        );
        assert!(
            st.rotate_oidc_keys().await.unwrap().is_none(),
            "{name}: not due"
        );
    }
}
