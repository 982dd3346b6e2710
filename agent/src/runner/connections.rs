//! The task's connections (named credential sets from the claim answer): their variables join
//! tofu's environment, their files are written into the task's secrets directory with the
//! variable naming each file's path, and every secret value is handed to the masker. The log
//! says which connections (names, versions, keys) the task got, never a value.

use super::secrets::SecretsDir;
use crate::error::Result;
use crate::report::Reporter;
use std::collections::BTreeMap;
use tofuflow_proto::v1;

/// Writes the connections' files and returns the variables they set, in the coordinator's
/// order (a later connection's key wins).
pub(super) fn apply(
    spec: &v1::TaskSpec,
    dir: &SecretsDir,
    rep: &Reporter,
) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for c in &spec.connections {
        for (k, v) in &c.env {
            env.insert(k.clone(), v.clone());
        }
        for (k, content) in &c.files {
            let path = dir.write(k, content)?;
            env.insert(k.clone(), path.display().to_string());
        }
        rep.system(format!(
            "tofuflow: connection {} (version {}): {}",
            c.name,
            c.version,
            describe(c)
        ));
    }
    Ok(env)
}

/// The keys of a connection as the log shows them: `A, B, KUBECONFIG (file)`.
fn describe(c: &v1::ConnectionGrant) -> String {
    let mut keys: Vec<String> = c.env.keys().cloned().collect();
    keys.extend(c.files.keys().map(|k| format!("{k} (file)")));
    keys.sort();
    keys.join(", ")
}

/// Every value of the task's connections that must not be seen: all but plain keys'.
pub fn secret_values(spec: &v1::TaskSpec) -> Vec<String> {
    let mut out = Vec::new();
    for c in &spec.connections {
        let secret = |k: &String| !c.plain_keys.contains(k);
        out.extend(
            c.env
                .iter()
                .filter(|(k, _)| secret(k))
                .map(|(_, v)| v.clone()),
        );
        out.extend(
            c.files
                .iter()
                .filter(|(k, _)| secret(k))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_are_not_secret() {
        let spec = v1::TaskSpec {
            connections: vec![v1::ConnectionGrant {
                name: "aws".into(),
                version: 2,
                env: [
                    (
                        "AWS_SECRET_ACCESS_KEY".to_string(),
                        "wJalrXUtnFEMI".to_string(),
                    ),
                    ("AWS_REGION".to_string(), "eu-west-1".to_string()),
                ]
                .into(),
                files: [("KUBECONFIG".to_string(), b"apiVersion: v1".to_vec())].into(),
                plain_keys: vec!["AWS_REGION".into()],
            }],
            ..Default::default()
        };
        let s = secret_values(&spec);
        assert_eq!(s, ["wJalrXUtnFEMI", "apiVersion: v1"]);
        assert_eq!(
            describe(&spec.connections[0]),
            "AWS_REGION, AWS_SECRET_ACCESS_KEY, KUBECONFIG (file)"
        );
    }
}
