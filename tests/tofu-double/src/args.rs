//! Go-style flag parsing as OpenTofu's commands do it: `-f=v`, `-f v`, `-bool`, `-bool=false`,
//! repeatable flags, parsing stops at the first positional argument or `--`; plus `TF_CLI_ARGS`
//! and `TF_CLI_ARGS_<cmd>` inserted right after the subcommand.

use std::collections::HashMap;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Value,
    Repeat,
}

/// Parsed flags of one command.
#[derive(Default, Debug)]
pub struct Flags {
    pub bools: HashMap<String, bool>,
    pub values: HashMap<String, String>,
    pub repeats: Vec<(String, String)>,
    pub positional: Vec<String>,
}

impl Flags {
    pub fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }
    pub fn bool_or(&self, name: &str, default: bool) -> bool {
        self.bools.get(name).copied().unwrap_or(default)
    }
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.repeats
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses `args` against `spec`; an unknown flag is an error in Go's words.
pub fn parse(args: &[String], spec: &[(&str, Kind)]) -> Result<Flags, String> {
    let kinds: HashMap<&str, Kind> = spec.iter().copied().collect();
    let mut f = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            f.positional.extend(args[i + 1..].iter().cloned());
            break;
        }
        if !a.starts_with('-') || a == "-" {
            f.positional.extend(args[i..].iter().cloned());
            break;
        }
        let body = a.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let kind = *kinds
            .get(name)
            .ok_or_else(|| format!("flag provided but not defined: -{name}"))?;
        match kind {
            Kind::Bool => {
                let v = match inline.as_deref() {
                    None => true,
                    Some(s) => parse_bool(s)
                        .ok_or_else(|| format!("invalid boolean value {s:?} for -{name}"))?,
                };
                f.bools.insert(name.to_string(), v);
            }
            Kind::Value | Kind::Repeat => {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| format!("flag needs an argument: -{name}"))?
                    }
                };
                if kind == Kind::Value {
                    f.values.insert(name.to_string(), v);
                } else {
                    f.repeats.push((name.to_string(), v));
                }
            }
        }
        i += 1;
    }
    Ok(f)
}

/// `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Splits a string with shell-word rules (single and double quotes, backslash escapes).
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Inserts `TF_CLI_ARGS` and `TF_CLI_ARGS_<cmd>` right after the subcommand words, so explicit
/// flags (which come later) win.
pub fn with_env_args(cmd_words: &[&str], rest: Vec<String>) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    if let Ok(v) = std::env::var("TF_CLI_ARGS") {
        args.extend(shell_words(&v)?);
    }
    let key = format!("TF_CLI_ARGS_{}", cmd_words.join("_").replace('-', "_"));
    if let Ok(v) = std::env::var(&key) {
        args.extend(shell_words(&v)?);
    }
    args.extend(rest);
    Ok(args)
}

/// Parses a Go duration such as `0s`, `3s`, `1m30s`, `500ms`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let mul = match unit.as_str() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mul;
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn go_style_flags() {
        let spec = [
            ("json", Kind::Bool),
            ("out", Kind::Value),
            ("var", Kind::Repeat),
            ("lock", Kind::Bool),
        ];
        let f = parse(
            &s(&[
                "-json",
                "-out",
                "p.bin",
                "-var=a=1",
                "--var",
                "b=2",
                "-lock=false",
                "dir",
            ]),
            &spec,
        )
        .unwrap();
        assert!(f.bool("json"));
        assert!(!f.bool_or("lock", true));
        assert_eq!(f.value("out"), Some("p.bin"));
        assert_eq!(f.all("var"), vec!["a=1", "b=2"]);
        assert_eq!(f.positional, vec!["dir"]);
        let e = parse(&s(&["-nope"]), &spec).unwrap_err();
        assert_eq!(e, "flag provided but not defined: -nope");
    }

    #[test]
    fn shell_words_and_durations() {
        assert_eq!(
            shell_words(r#"-var 'a=b c' -x="y z" \q"#).unwrap(),
            s(&["-var", "a=b c", "-x=y z", "q"])
        );
        assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("0s").unwrap().as_secs(), 0);
        assert!(parse_duration("3x").is_none());
    }
}
