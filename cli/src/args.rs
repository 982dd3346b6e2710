//! Value parsers for the access-control flags (lifetimes, workspace globs, bundle digests,
//! pools): a bad value is refused before anything is sent, with a message saying what fits.

/// Parses a lifetime such as `30d`, `12h` or `90m` into milliseconds.
pub fn ttl_ms(s: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a lifetime like 30d, 12h or 90m ({e})"))?;
    let ms = i64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))?;
    if ms == 0 {
        return Err(format!(
            "{s:?} is no time at all: give a lifetime like 30d, 12h or 90m"
        ));
    }
    Ok(ms)
}

/// Checks a workspace glob (`ml/*`, `prod/**`, `**`): parts separated by `/`, none empty, made of
/// the characters workspace names use plus `*`. Which patterns match is the coordinator's call.
pub fn workspace_glob(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./*".contains(c))
        && s.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
    if !ok {
        return Err(format!(
            "invalid workspace glob {s:?}: use workspace parts separated by '/', where `*` is one part and `**` any number of parts (e.g. ml/*, prod/**, **)"
        ));
    }
    Ok(s.to_string())
}

/// Normalizes a bundle digest to `sha256:<64 hex digits>`; the bare hex is accepted too.
pub fn bundle_digest(s: &str) -> Result<String, String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid bundle digest {s:?}: expected sha256: and 64 hex digits, as `run show` prints it"
        ));
    }
    Ok(format!("sha256:{hex}"))
}

/// Checks a pool name.
pub fn pool(s: &str) -> Result<String, String> {
    tofuflow_proto::names::valid_pool(s)?;
    Ok(s.to_string())
}

/// Checks a workspace name.
pub fn workspace(s: &str) -> Result<String, String> {
    tofuflow_proto::names::valid_workspace(s)?;
    Ok(s.to_string())
}

/// Checks a connection name.
pub fn connection_name(s: &str) -> Result<String, String> {
    tofuflow_proto::connections::valid_name(s)?;
    Ok(s.to_string())
}

/// `VAR=PATH` (`--file KUBECONFIG=./kubeconfig`).
pub fn key_path(s: &str) -> Result<(String, std::path::PathBuf), String> {
    let (k, p) = s
        .split_once('=')
        .filter(|(k, p)| !k.is_empty() && !p.is_empty())
        .ok_or_else(|| format!("{s:?}: expected VAR=PATH, e.g. KUBECONFIG=./kubeconfig"))?;
    tofuflow_proto::connections::valid_key(k)?;
    Ok((k.to_string(), p.into()))
}

/// A run tag `KEY=VALUE` (`dag_id=nightly`).
pub fn tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE, e.g. dag_id=nightly"))?;
    tofuflow_proto::names::valid_tag(k, v)?;
    Ok((k.to_string(), v.to_string()))
}

/// Checks that a value is not empty (a user name, a source prefix, an id).
pub fn non_empty(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(ttl_ms("30d"), Ok(30 * 86_400_000));
        assert_eq!(ttl_ms("1h"), Ok(3_600_000));
        assert_eq!(ttl_ms("1h 30m"), Ok(5_400_000));
        assert!(ttl_ms("0s").unwrap_err().contains("no time"));
        assert!(ttl_ms("soon").unwrap_err().contains("like 30d"));
        assert!(ttl_ms("30").unwrap_err().contains("like 30d"));
    }

    #[test]
    fn globs() {
        for ok in ["**", "ml/*", "prod/**", "ml/gpu-a100", "a/*/c"] {
            assert_eq!(workspace_glob(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in ["", "/ml", "ml/", "ml//x", "ml/../x", "ml x", "ml,prod"] {
            assert!(workspace_glob(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests() {
        let hex = "ab".repeat(32);
        assert_eq!(bundle_digest(&hex), Ok(format!("sha256:{hex}")));
        assert_eq!(
            bundle_digest(&format!("sha256:{}", hex.to_uppercase())),
            Ok(format!("sha256:{hex}"))
        );
        assert!(bundle_digest("sha256:abc").is_err());
        assert!(bundle_digest(&format!("md5:{hex}")).is_err());
    }

    #[test]
    fn pools_and_names() {
        assert_eq!(pool("gpu-a100").as_deref(), Ok("gpu-a100"));
        assert!(pool("gpu pool").is_err());
        assert_eq!(non_empty(" alice ").as_deref(), Ok("alice"));
        assert!(non_empty("  ").is_err());
    }
}
