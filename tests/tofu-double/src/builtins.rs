//! OpenTofu's hashing, encoding, regular-expression, collection, numeric, filesystem and
//! sensitivity functions, with its semantics (values checked against the real binary by
//! conformance modules 41 to 48). The date and time ones are in `datetime.rs`.

use crate::functions::{call, declare_all, hex, items, number, number_value, text};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use serde_json::{json, Map, Value};
use sha1::Digest;

/// The names `declare` adds.
pub const NAMES: &[&str] = &[
    "abspath",
    "base64sha256",
    "base64sha512",
    "cidrnetmask",
    "cidrsubnets",
    "csvdecode",
    "filebase64",
    "filebase64sha256",
    "filebase64sha512",
    "filemd5",
    "fileset",
    "filesha1",
    "filesha256",
    "filesha512",
    "issensitive",
    "log",
    "matchkeys",
    "nonsensitive",
    "pathexpand",
    "regex",
    "regexall",
    "rsadecrypt",
    "sensitive",
    "setproduct",
    "sha1",
    "sha256",
    "sha512",
    "strcontains",
    "templatefile",
    "templatestring",
    "textdecodebase64",
    "textencodebase64",
    "transpose",
    "uuidv5",
];

/// Declares every function in `NAMES`.
pub fn declare(ctx: &mut Context) {
    declare_hashes(ctx);
    declare_others(ctx);
    crate::datetime::declare(ctx);
}

fn sha1_of(b: &[u8]) -> Vec<u8> {
    sha1::Sha1::digest(b).to_vec()
}
fn sha256_of(b: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(b).to_vec()
}
fn sha512_of(b: &[u8]) -> Vec<u8> {
    sha2::Sha512::digest(b).to_vec()
}
fn md5_of(b: &[u8]) -> Vec<u8> {
    md5::Md5::digest(b).to_vec()
}

/// The bytes of the file a path names (relative to the working directory, as OpenTofu reads it).
fn read(v: &Value) -> Result<Vec<u8>, String> {
    let p = text(v);
    std::fs::read(&p).map_err(|_| {
        format!("Invalid value for \"path\" parameter: no file exists at {p:?}; this function works only with files that are distributed as part of the configuration source code, so if this file will be created by a resource in this configuration you must instead obtain this result from an attribute of that resource.")
    })
}

fn hashes(a: &Value, hash: fn(&[u8]) -> Vec<u8>) -> Result<Value, String> {
    Ok(json!(hex(&hash(text(a).as_bytes()))))
}

fn file_hex(a: &Value, hash: fn(&[u8]) -> Vec<u8>) -> Result<Value, String> {
    Ok(json!(hex(&hash(&read(a)?))))
}

fn file_b64(a: &Value, hash: fn(&[u8]) -> Vec<u8>) -> Result<Value, String> {
    Ok(json!(B64.encode(hash(&read(a)?))))
}

/// The hashing functions and `uuidv5`.
fn declare_hashes(ctx: &mut Context) {
    declare_all!(
        ctx,
        ("sha1", 1, false, |a| hashes(&a[0], sha1_of)),
        ("sha256", 1, false, |a| hashes(&a[0], sha256_of)),
        ("sha512", 1, false, |a| hashes(&a[0], sha512_of)),
        ("base64sha256", 1, false, |a| {
            Ok(json!(B64.encode(sha256_of(text(&a[0]).as_bytes()))))
        }),
        ("base64sha512", 1, false, |a| {
            Ok(json!(B64.encode(sha512_of(text(&a[0]).as_bytes()))))
        }),
        ("filemd5", 1, false, |a| file_hex(&a[0], md5_of)),
        ("filesha1", 1, false, |a| file_hex(&a[0], sha1_of)),
        ("filesha256", 1, false, |a| file_hex(&a[0], sha256_of)),
        ("filesha512", 1, false, |a| file_hex(&a[0], sha512_of)),
        ("filebase64", 1, false, |a| file_b64(&a[0], |b| b.to_vec())),
        ("filebase64sha256", 1, false, |a| file_b64(&a[0], sha256_of)),
        ("filebase64sha512", 1, false, |a| file_b64(&a[0], sha512_of)),
        ("uuidv5", 2, false, uuidv5),
        ("rsadecrypt", 2, false, |a| rsadecrypt(
            &text(&a[0]),
            &text(&a[1])
        )),
    );
}

/// Encoding, regular expressions, collections, numbers, paths, templates and sensitivity.
fn declare_others(ctx: &mut Context) {
    declare_all!(
        ctx,
        ("csvdecode", 1, false, |a| csvdecode(&text(&a[0]))),
        ("textencodebase64", 2, false, |a| {
            crate::textenc::encode(&text(&a[0]), &text(&a[1])).map(|b| json!(B64.encode(b)))
        }),
        ("textdecodebase64", 2, false, |a| {
            let bytes = B64.decode(text(&a[0])).map_err(|e| {
                format!("Invalid value for \"source\" parameter: the given value is not a valid base64 string: {e}")
            })?;
            crate::textenc::decode(&bytes, &text(&a[1])).map(Value::String)
        }),
        ("regex", 2, false, |a| regex(&a[0], &a[1], false)),
        ("regexall", 2, false, |a| regex(&a[0], &a[1], true)),
        ("strcontains", 2, false, |a| {
            Ok(json!(text(&a[0]).contains(&text(&a[1]))))
        }),
        ("matchkeys", 3, false, matchkeys),
        ("setproduct", 0, true, setproduct),
        ("transpose", 1, false, transpose),
        ("log", 2, false, |a| {
            Ok(number_value(number(&a[0]).ln() / number(&a[1]).ln()))
        }),
        ("cidrnetmask", 1, false, |a| {
            crate::cidr::netmask(&text(&a[0])).map(Value::String)
        }),
        ("cidrsubnets", 1, true, cidrsubnets),
        ("abspath", 1, false, |a| Ok(json!(abspath(&text(&a[0]))))),
        ("pathexpand", 1, false, |a| pathexpand(&text(&a[0]))),
        ("fileset", 2, false, |a| fileset(&text(&a[0]), &text(&a[1]))),
        ("templatefile", 2, false, templatefile),
        ("templatestring", 2, false, |a| template(
            &text(&a[0]),
            &a[1]
        )),
        // Marks are followed through the configuration (`sensitivity.rs`), not the values.
        ("sensitive", 1, false, |a| Ok(a[0].clone())),
        ("nonsensitive", 1, false, |a| Ok(a[0].clone())),
        (crate::sensitivity::ISSENSITIVE_PLAIN, 1, false, |_| Ok(
            json!(false)
        )),
        ("issensitive", 1, false, |_| {
            Err("issensitive() is answered by the tofu stand-in only in locals, outputs, resources and check blocks, outside string templates; run this module with real OpenTofu".into())
        }),
    );
}

fn uuidv5(a: &[Value]) -> Result<Value, String> {
    let ns = match text(&a[0]).as_str() {
        "dns" => uuid::Uuid::NAMESPACE_DNS,
        "url" => uuid::Uuid::NAMESPACE_URL,
        "oid" => uuid::Uuid::NAMESPACE_OID,
        "x500" => uuid::Uuid::NAMESPACE_X500,
        other => uuid::Uuid::parse_str(other)
            .map_err(|e| format!("uuidv5() doesn't support namespace {other} ({e})"))?,
    };
    let mut h = sha1::Sha1::new();
    h.update(ns.as_bytes());
    h.update(text(&a[1]).as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let id = uuid::Builder::from_sha1_bytes(bytes).into_uuid();
    Ok(json!(id.to_string()))
}

/// `rsadecrypt(ciphertext, key)`: PKCS #1 v1.5 decryption with a PEM private key (PKCS #1 or
/// PKCS #8).
fn rsadecrypt(ciphertext: &str, key: &str) -> Result<Value, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let bytes = B64.decode(ciphertext).map_err(|e| {
        format!("Invalid value for \"ciphertext\" parameter: failed to decode input {ciphertext:?}: cipher text must be base64-encoded ({e})")
    })?;
    let pk = rsa::RsaPrivateKey::from_pkcs1_pem(key)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(key))
        .map_err(|e| {
            format!("Invalid value for \"privatekey\" parameter: invalid private key: {e}")
        })?;
    let plain = pk
        .decrypt(rsa::Pkcs1v15Encrypt, &bytes)
        .map_err(|_| "failed to decrypt: crypto/rsa: decryption error".to_string())?;
    String::from_utf8(plain)
        .map(Value::String)
        .map_err(|_| "the decrypted text is not valid UTF-8".into())
}

/// `csvdecode`: RFC 4180 as Go's `encoding/csv` reads it; the first line names the columns.
fn csvdecode(src: &str) -> Result<Value, String> {
    let rows = csv_rows(src)?;
    let Some((head, body)) = rows.split_first() else {
        return Err("missing header line".into());
    };
    let mut out = Vec::new();
    for (i, row) in body.iter().enumerate() {
        if row.len() != head.len() {
            return Err(format!(
                "record on line {} has wrong number of fields",
                i + 2
            ));
        }
        let obj: Map<String, Value> = head
            .iter()
            .cloned()
            .zip(row.iter().map(|f| json!(f)))
            .collect();
        out.push(Value::Object(obj));
    }
    Ok(Value::Array(out))
}

fn csv_rows(src: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() && !was_quoted => (quoted, was_quoted) = (true, true),
            (false, '"') if !was_quoted => return Err("bare \" in non-quoted field".into()),
            (false, ',') => {
                row.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                was_quoted = false;
            }
            // After a quoted field only a separator or the end of the line may follow.
            (false, _) if was_quoted => {
                return Err("extraneous or missing \" in quoted-field".into())
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("extraneous or missing \" in quoted-field".into());
    }
    if !field.is_empty() || !row.is_empty() || was_quoted {
        row.push(field);
        rows.push(row);
    }
    Ok(rows.into_iter().filter(|r| r != &[String::new()]).collect())
}

/// `regex` (the first match) and `regexall` (every match): the matched text without capture
/// groups, a list of the groups, or an object of named groups; a group that did not take part
/// is null.
fn regex(pattern: &Value, s: &Value, all: bool) -> Result<Value, String> {
    let re = regex::Regex::new(&go_syntax(&text(pattern))).map_err(|e| {
        format!("Invalid value for \"pattern\" parameter: invalid regular expression: {e}")
    })?;
    let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
    let named = names.iter().filter(|n| n.is_some()).count();
    if named > 0 && named < names.len() {
        return Err("Invalid value for \"pattern\" parameter: invalid regular expression: can't mix both named and unnamed capture groups".into());
    }
    let hay = text(s);
    let one = |c: regex::Captures| -> Value {
        let group = |i: usize| c.get(i).map_or(Value::Null, |m| json!(m.as_str()));
        match (names.len(), named) {
            (0, _) => group(0),
            (_, 0) => Value::Array((1..=names.len()).map(group).collect()),
            _ => Value::Object(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.unwrap_or_default().to_string(), group(i + 1)))
                    .collect(),
            ),
        }
    };
    if all {
        return Ok(Value::Array(re.captures_iter(&hay).map(one).collect()));
    }
    re.captures(&hay)
        .map(one)
        .ok_or_else(|| "pattern did not match any part of the given string".into())
}

/// `replace` with a `/regex/`: every match replaced, `$1`, `${name}` expanded as Go does.
pub fn replace_regex(s: &str, pattern: &str, with: &str) -> Result<String, String> {
    let re = regex::Regex::new(&go_syntax(pattern)).map_err(|e| {
        format!("Invalid value for \"substring\" parameter: invalid regular expression: {e}")
    })?;
    Ok(re.replace_all(s, with).into_owned())
}

/// A Go (RE2) pattern in the regex crate's syntax: `\d`, `\w`, `\s`, `\b` and their negations
/// are ASCII-only in Go (Unicode in the crate); inside a character class `[` (other than
/// `[:name:]`), `&` and `~` are literal in Go (nesting and set operators in the crate).
fn go_syntax(pattern: &str) -> String {
    const SPACE: &str = r"\t\n\f\r ";
    let mut out = String::new();
    let mut class_start = None;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let in_class = class_start.is_some();
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push(c);
                    break;
                };
                let class = |set: &str, negated: bool| {
                    let caret = if negated { "^" } else { "" };
                    format!("[{caret}{set}]")
                };
                match e {
                    'd' | 'D' => out.push_str(&class("0-9", e == 'D')),
                    'w' | 'W' => out.push_str(&class("0-9A-Za-z_", e == 'W')),
                    's' | 'S' => out.push_str(&class(SPACE, e == 'S')),
                    'b' | 'B' if !in_class => out.push_str(&format!("(?-u:\\{e})")),
                    _ => {
                        out.push(c);
                        out.push(e);
                    }
                }
            }
            '[' if !in_class => {
                out.push(c);
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
                class_start = Some(out.len());
            }
            '[' if chars.peek() != Some(&':') => out.push_str("\\["),
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '[' => {
                // `[:alpha:]` inside a class: copied through its closing `]`.
                out.push(c);
                for x in chars.by_ref() {
                    out.push(x);
                    if x == ']' {
                        break;
                    }
                }
            }
            ']' if in_class => {
                out.push(c);
                class_start = None;
            }
            _ => out.push(c),
        }
    }
    out
}

fn matchkeys(a: &[Value]) -> Result<Value, String> {
    let (values, keys, search) = (items(&a[0]), items(&a[1]), items(&a[2]));
    if values.len() != keys.len() {
        return Err("length of keys and values should be equal".into());
    }
    let kept = values
        .into_iter()
        .zip(keys)
        .filter(|(_, k)| search.contains(k))
        .map(|(v, _)| v);
    Ok(Value::Array(kept.collect()))
}

fn setproduct(a: &[Value]) -> Result<Value, String> {
    if a.len() < 2 {
        return Err("at least two arguments are required".into());
    }
    let mut out: Vec<Vec<Value>> = vec![Vec::new()];
    for list in a.iter().map(items) {
        out = out
            .iter()
            .flat_map(|p| {
                list.iter()
                    .map(move |x| [p.clone(), vec![x.clone()]].concat())
            })
            .collect();
    }
    Ok(Value::Array(out.into_iter().map(Value::Array).collect()))
}

fn transpose(a: &[Value]) -> Result<Value, String> {
    let Value::Object(m) = &a[0] else {
        return Err("transpose() needs a map of lists of strings".into());
    };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let mut out: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for k in keys {
        for v in items(&m[k]) {
            out.entry(text(&v)).or_default().push(json!(k));
        }
    }
    Ok(json!(out))
}

fn cidrsubnets(a: &[Value]) -> Result<Value, String> {
    let bits: Vec<i64> = a[1..].iter().map(|v| number(v) as i64).collect();
    crate::cidr::subnets(&text(&a[0]), &bits).map(|l| json!(l))
}

/// Go's `filepath.Clean`.
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn abspath(p: &str) -> String {
    if p.starts_with('/') {
        return clean(p);
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    clean(&format!("{}/{p}", cwd.display()))
}

fn pathexpand(p: &str) -> Result<Value, String> {
    let Some(rest) = p.strip_prefix('~') else {
        return Ok(json!(p));
    };
    if !rest.is_empty() && !rest.starts_with('/') {
        return Err("cannot expand user-specific home dir".into());
    }
    let home = std::env::var("HOME").map_err(|_| "home directory not found".to_string())?;
    Ok(json!(format!("{home}{rest}")))
}

/// `fileset(path, pattern)`: the files under `path` matching the pattern (`*` within a
/// directory, `**` across them, `?`, `[...]`, `{a,b}`), relative to `path`, sorted.
fn fileset(root: &str, pattern: &str) -> Result<Value, String> {
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("failed to glob pattern ({pattern}): {e}"))?
        .compile_matcher();
    let mut found = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(root)];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .to_string();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
            } else if glob.is_match(&rel) {
                found.push(rel);
            }
        }
    }
    found.sort();
    Ok(json!(found))
}

fn templatefile(a: &[Value]) -> Result<Value, String> {
    let p = text(&a[0]);
    let src = std::fs::read_to_string(&p).map_err(|_| {
        format!("Invalid value for \"path\" parameter: no file exists at {p:?}; this function works only with files that are distributed as part of the configuration source code, so if this file will be created by a resource in this configuration you must instead obtain this result from an attribute of that resource.")
    })?;
    template(&src, &a[1])
}

/// Renders a template with only `vars` (and the built-in functions) in scope.
fn template(src: &str, vars: &Value) -> Result<Value, String> {
    use hcl::eval::Evaluate;
    let tpl: hcl::Template = src
        .parse()
        .map_err(|e| format!("failed to parse template: {e}"))?;
    let mut ctx = Context::new();
    crate::eval::declare_functions(&mut ctx);
    if let Value::Object(m) = vars {
        for (k, v) in m {
            ctx.declare_var(k.as_str(), crate::eval::to_hcl(v));
        }
    }
    tpl.evaluate(&ctx)
        .map(Value::String)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values are what Terraform 1.11.4 printed for the same tree.
    #[test]
    fn fileset_globs_as_the_real_binary() {
        let root = std::env::temp_dir().join(format!("tofu-double-fileset-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub/deep")).unwrap();
        for f in [
            "a.txt",
            ".hidden.txt",
            "sub/b.txt",
            "sub/deep/c.txt",
            "sub/deep/d.md",
        ] {
            std::fs::write(root.join(f), "").unwrap();
        }
        let r = root.to_string_lossy().to_string();
        let glob = |dir: &str, p: &str| fileset(&format!("{r}{dir}"), p).unwrap();
        assert_eq!(
            glob("", "**/*.txt"),
            json!([".hidden.txt", "a.txt", "sub/b.txt", "sub/deep/c.txt"])
        );
        assert_eq!(glob("", "sub/*"), json!(["sub/b.txt"]));
        assert_eq!(
            glob("/sub", "**"),
            json!(["b.txt", "deep/c.txt", "deep/d.md"])
        );
        assert_eq!(glob("", "sub/**/*.md"), json!(["sub/deep/d.md"]));
        assert_eq!(glob("", "[ab].txt"), json!(["a.txt"]));
        std::fs::remove_dir_all(root).unwrap();
    }

    /// Expected values are what Terraform 1.11.4 printed for the same calls.
    #[test]
    fn values_as_the_real_binary_prints_them() {
        assert_eq!(
            uuidv5(&[json!("dns"), json!("example.com")]).unwrap(),
            "cfbff0d1-9375-5685-968c-48ce8b15ae17"
        );
        assert_eq!(
            hashes(&json!("hello"), sha1_of).unwrap(),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        let csv = csvdecode("a,b\n1,\"x y\"\n3,4\n").unwrap();
        assert_eq!(csv, json!([{"a": "1", "b": "x y"}, {"a": "3", "b": "4"}]));
        assert!(csvdecode("a\n\"x\"y\n").is_err());
        assert!(csvdecode("a\nx\"y\n").is_err());
        assert!(csvdecode("a,b\n1\n").is_err());
        assert_eq!(
            replace_regex("hello world", "w(or)ld", "$1 [$0]").unwrap(),
            "hello or [world]"
        );
        assert_eq!(clean("/a/../b/./c/"), "/b/c");
        let re = |p: &str, s: &str, all: bool| regex(&json!(p), &json!(s), all).unwrap();
        assert_eq!(re("\\w+", "héllo wörld", false), "h");
        assert_eq!(re("\\d", "1٣2", true), json!(["1", "2"]));
        assert_eq!(re("\\bx", "éx x", true), json!(["x", "x"]));
        assert_eq!(re("[\\w]+", "ébc", false), "bc");
        assert_eq!(re("[^\\d]", "a1", true), json!(["a"]));
        assert_eq!(re("[]a]+", "x]a]", false), "]a]");
        assert_eq!(re("[[:alpha:]&]+", "1a&b", false), "a&b");
        assert_eq!(
            replace_regex("a b\u{a0}c", "\\s", "_").unwrap(),
            "a_b\u{a0}c"
        );
        assert_eq!(clean("../x/.."), "..");
        let t = transpose(&[json!({"a": ["1", "2"], "b": ["2", "3"]})]).unwrap();
        assert_eq!(t, json!({"1": ["a"], "2": ["a", "b"], "3": ["b"]}));
    }
}
