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
}
