//! Checks of the names users choose (workspaces, variables, pools): shared by the CLI, which
//! refuses a bad name before it packs or uploads anything, and the coordinator, which refuses
//! it again because a caller may not be the CLI.

/// Checks a workspace name: workspace names appear in URLs (`/state/{workspace}`) and logs, so
/// they stay plain (letters, digits, `-`, `_`, `.`, with `/` between non-empty parts).
pub fn valid_workspace(ws: &str) -> Result<(), String> {
    let ok_chars = ws
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ws.is_empty()
        || ws.len() > 200
        || !ok_chars
        || ws.starts_with('/')
        || ws.ends_with('/')
        || ws.split('/').any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(format!(
            "invalid workspace {ws:?}: use up to 200 letters, digits, '-', '_', '.', with '/' between parts (e.g. ml/gpu-a100)"
        ));
    }
    Ok(())
}

/// Checks a variable name (`--var NAME=VALUE`): a letter or `_` first, then letters, digits,
/// `_` and `-`, at most 128 characters, as OpenTofu accepts them.
pub fn valid_var_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 128
        && n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(format!(
            "invalid variable name {n:?}: use letters, digits, '_' and '-', starting with a letter"
        ));
    }
    Ok(())
}

/// Checks that a pool name is usable as a routing key and queue name.
pub fn valid_pool(pool: &str) -> Result<(), String> {
    if pool.is_empty()
        || pool.len() > 100
        || !pool
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "invalid pool {pool:?}: use 1-100 letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

/// Checks a plan policy's name: 1-63 lowercase letters, digits, '-' or '_', starting with a
/// letter (`deny-protected`, `auto_approve_dev`).
pub fn valid_policy_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !rest_ok || name.len() > 63 {
        return Err(format!(
            "invalid policy name {name:?}: use 1-63 lowercase letters, digits, '-' or '_', starting with a letter"
        ));
    }
    Ok(())
}

/// At most this many tags per run.
pub const MAX_TAGS: usize = 32;

/// Checks a run tag: the key 1–63 of lowercase letters, digits, `_`, `-`, `.`, `/`, starting
/// with a letter (`dag_id`, `team`, `airflow.task_id`); the value at most 256 printable
/// characters (empty allowed).
pub fn valid_tag(key: &str, value: &str) -> Result<(), String> {
    let key_ok = !key.is_empty()
        && key.len() <= 63
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-./".contains(c));
    if !key_ok {
        return Err(format!(
            "invalid tag key {key:?}: use 1 to 63 lowercase letters, digits, '_', '-', '.', '/', starting with a letter (e.g. dag_id)"
        ));
    }
    if value.chars().count() > 256 || value.chars().any(char::is_control) {
        return Err(format!(
            "invalid value for tag {key}: at most 256 characters, no control characters"
        ));
    }
    Ok(())
}

/// Checks a run's tags: each one, and how many.
pub fn valid_tags<'a>(
    tags: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    let mut n = 0;
    for (k, v) in tags {
        valid_tag(k, v)?;
        n += 1;
    }
    if n > MAX_TAGS {
        return Err(format!("a run carries at most {MAX_TAGS} tags ({n} given)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_names() {
        assert!(valid_workspace("ml/gpu-a100").is_ok());
        assert!(valid_workspace("prod.eu-west-1").is_ok());
        for bad in [
            "",
            "/x",
            "x/",
            "a//b",
            "../etc",
            "a/../b",
            "a b",
            "x?y",
            &"a".repeat(201),
        ] {
            assert!(valid_workspace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn variable_and_pool_names() {
        for good in ["gpu_count", "_x", "a-b", "A1"] {
            assert!(valid_var_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "1x", "-x", "a b", "a.b", "a=b", &"a".repeat(129)] {
            let e = valid_var_name(bad).unwrap_err();
            assert!(e.contains("invalid variable name"), "{e}");
        }
        assert!(valid_pool("gpu-a100").is_ok());
        assert!(valid_pool("a.b").is_err());
        assert!(valid_pool("").is_err());
    }

    #[test]
    fn tags_are_plain_keys_and_short_printable_values() {
        valid_tag("dag_id", "nightly_gpu").unwrap();
        valid_tag("airflow.task_id", "").unwrap();
        for k in ["", "Dag", "1x", "a b", &"x".repeat(64)] {
            assert!(valid_tag(k, "v").is_err(), "{k:?}");
        }
        assert!(valid_tag("k", "a\nb").is_err());
        assert!(valid_tag("k", &"v".repeat(257)).is_err());
        let many: std::collections::BTreeMap<String, String> =
            (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(valid_tags(&many).unwrap_err().contains("at most 32"));
    }
}
