//! Checks of connections (named credential sets), shared by the CLI, which refuses bad input
//! before sending any value, and the coordinator, which refuses it again: names, the variable
//! names a connection may set, and secret values too short to mask.

use std::collections::BTreeMap;

/// Secret values shorter than this are refused: masking them in logs would hide every
/// occurrence of a common word, and leaving them unmasked would leak them.
pub const MIN_SECRET_LEN: usize = 8;

/// At most this many keys per connection, and this many bytes in all its values.
pub const MAX_KEYS: usize = 200;
pub const MAX_TOTAL_BYTES: usize = 1024 * 1024;

/// Variables tofuflow sets for every task, or that would let a connection take over the
/// process (`LD_*`); a connection may not set them.
const RESERVED: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "TRACEPARENT",
    "TF_CLI_CONFIG_FILE",
    "TF_PLUGIN_CACHE_DIR",
    "TF_IN_AUTOMATION",
    "TF_INPUT",
    "TF_DATA_DIR",
    "SSL_CERT_FILE",
];
const RESERVED_PREFIXES: &[&str] = &["TOFUFLOW_", "TF_HTTP_", "LD_", "TF_CLI_ARGS"];

/// A connection name: 1–100 of letters, digits, `-`, `_`, `.`, starting with a letter or digit.
pub fn valid_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 100
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid connection name {n:?}: use up to 100 letters, digits, '-', '_', '.', starting with a letter or digit (e.g. aws-ml)"
        ))
    }
}

/// A key a connection sets: an environment variable name (a letter or `_`, then letters,
/// digits, `_`) that tofuflow does not reserve.
pub fn valid_key(k: &str) -> Result<(), String> {
    let shaped = !k.is_empty()
        && k.len() <= 128
        && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shaped {
        return Err(format!(
            "invalid variable name {k:?} in a connection: use a letter or '_' first, then letters, digits and '_' (e.g. AWS_SECRET_ACCESS_KEY)"
        ));
    }
    if RESERVED.contains(&k) || RESERVED_PREFIXES.iter().any(|p| k.starts_with(p)) {
        return Err(format!(
            "{k} is set by tofuflow for every task (or would change how processes start): a connection may not set it; choose another name"
        ));
    }
    Ok(())
}

/// Checks a whole set of values: keys, no key both a variable and a file, plain keys that
/// exist, secret values long enough to mask, sizes.
pub fn check_values(
    env: &BTreeMap<String, String>,
    files: &BTreeMap<String, Vec<u8>>,
    plain: &[String],
) -> Result<(), String> {
    if env.len() + files.len() > MAX_KEYS {
        return Err(format!(
            "a connection holds at most {MAX_KEYS} keys; split it in several connections"
        ));
    }
    let total: usize =
        env.values().map(String::len).sum::<usize>() + files.values().map(Vec::len).sum::<usize>();
    if total > MAX_TOTAL_BYTES {
        return Err(format!(
            "a connection's values are {total} bytes; at most {MAX_TOTAL_BYTES} are accepted"
        ));
    }
    for k in env.keys().chain(files.keys()) {
        valid_key(k)?;
    }
    if let Some(k) = env.keys().find(|k| files.contains_key(*k)) {
        return Err(format!(
            "{k} is given both as a variable and as a file: keep one"
        ));
    }
    if let Some(p) = plain
        .iter()
        .find(|p| !env.contains_key(*p) && !files.contains_key(*p))
    {
        return Err(format!("--plain {p}: the connection has no key {p}"));
    }
    for (k, v) in env.iter().filter(|(k, _)| !plain.contains(k)) {
        short_secret(k, v.trim())?;
    }
    for (k, v) in files.iter().filter(|(k, _)| !plain.contains(k)) {
        let text = String::from_utf8_lossy(v);
        short_secret(k, text.trim())?;
    }
    Ok(())
}

fn short_secret(k: &str, v: &str) -> Result<(), String> {
    if v.chars().count() < MIN_SECRET_LEN {
        return Err(format!(
            "the value of {k} is {} characters: a secret shorter than {MIN_SECRET_LEN} cannot be masked in logs safely; if it is not secret (a region, an account id), mark it with --plain {k}",
            v.chars().count()
        ));
    }
    Ok(())
}

/// Parses an env file: `KEY=VALUE` lines, `export ` allowed, `#` comments and blank lines
/// skipped, values optionally in single or double quotes (double quotes understand `\n`, `\"`
/// and `\\`). Errors name the line.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "line {}: expected KEY=VALUE, found no '=' (the value is not shown)",
                n + 1
            ));
        };
        let k = k.trim();
        valid_key(k).map_err(|e| format!("line {}: {e}", n + 1))?;
        let v = unquote(v.trim()).map_err(|e| format!("line {}: {e}", n + 1))?;
        if out.insert(k.to_string(), v).is_some() {
            return Err(format!("line {}: {k} is set twice", n + 1));
        }
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<String, String> {
    if let Some(inner) = v.strip_prefix('\'') {
        return inner
            .strip_suffix('\'')
            .map(str::to_string)
            .ok_or_else(|| "unterminated single quote".to_string());
    }
    let Some(inner) = v.strip_prefix('"') else {
        return Ok(v.to_string());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| "unterminated double quote".to_string())?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse_as_shells_and_dotenv_write_them() {
        let v = parse_env_file(
            "# creds\nexport AWS_ACCESS_KEY_ID=AKIAEXAMPLE123\n\nTOKEN=\"a b\\\"c\\nd\"\nQ='x=y z'\n",
        )
        .unwrap();
        assert_eq!(v["AWS_ACCESS_KEY_ID"], "AKIAEXAMPLE123");
        assert_eq!(v["TOKEN"], "a b\"c\nd");
        assert_eq!(v["Q"], "x=y z");
        let e = parse_env_file("A=1\nnot a pair\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(parse_env_file("A=1\nA=2").unwrap_err().contains("twice"));
        assert!(parse_env_file("PATH=/x").unwrap_err().contains("tofuflow"));
        assert!(parse_env_file("A=\"open").unwrap_err().contains("quote"));
    }

    #[test]
    fn reserved_and_badly_shaped_keys_are_refused() {
        for k in [
            "TF_HTTP_PASSWORD",
            "TOFUFLOW_X",
            "LD_PRELOAD",
            "PATH",
            "1A",
            "A-B",
            "",
        ] {
            assert!(valid_key(k).is_err(), "{k}");
        }
        for k in ["AWS_SECRET_ACCESS_KEY", "_X", "KUBECONFIG", "TF_VAR_token"] {
            valid_key(k).unwrap();
        }
    }

    #[test]
    fn short_secrets_are_refused_unless_plain() {
        let env: BTreeMap<String, String> = [("AWS_REGION".into(), "eu-1".into())].into();
        let e = check_values(&env, &BTreeMap::new(), &[]).unwrap_err();
        assert!(e.contains("--plain AWS_REGION"), "{e}");
        check_values(&env, &BTreeMap::new(), &["AWS_REGION".into()]).unwrap();
        let e = check_values(&env, &BTreeMap::new(), &["NOPE".into()]).unwrap_err();
        assert!(e.contains("no key NOPE"), "{e}");
        let files: BTreeMap<String, Vec<u8>> = [("AWS_REGION".into(), b"x".repeat(20))].into();
        assert!(check_values(&env, &files, &["AWS_REGION".into()])
            .unwrap_err()
            .contains("both"));
    }

    #[test]
    fn names_are_plain() {
        valid_name("aws-ml.prod_1").unwrap();
        for n in ["", "-x", "a b", "a/b", &"x".repeat(101)] {
            assert!(valid_name(n).is_err(), "{n}");
        }
    }
}
