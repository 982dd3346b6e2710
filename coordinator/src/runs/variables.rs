//! A run's input variables, the way OpenTofu will see them: which the module declares (and of
//! those, which are `sensitive` and which take an HCL expression rather than a literal), the
//! variables file a task gets instead of `-var` arguments (values never go on a command line),
//! and the values the agent must mask in the task's log.
//!
//! `-var NAME=VALUE` semantics are kept exactly: a variable declared with a primitive type (or
//! none) takes VALUE literally; any other type constraint parses VALUE as an HCL expression.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// One `variable` block of the root module.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Declared {
    #[serde(default)]
    pub sensitive: bool,
    /// The type constraint is not string/number/bool (or absent): the value is an expression.
    #[serde(default)]
    pub expression: bool,
}

/// The root module's variable blocks. `complete` is false when a file could not be parsed (the
/// set may then miss declarations, so nothing is refused for being undeclared).
#[derive(Clone, Debug, Default)]
pub struct Declarations {
    pub vars: BTreeMap<String, Declared>,
    pub complete: bool,
}

/// Most a bundle's root `.tf` files may hold together for this scan (larger: not scanned).
const MAX_SOURCE: u64 = 8 * 1024 * 1024;

/// How much of a bundle is unpacked, and how many entries are looked at, to find the
/// declarations: a hostile bundle (a decompression bomb, a million entries) costs at most this
/// and leaves the declarations incomplete (the agent refuses such a bundle anyway).
const MAX_SCANNED: u64 = 64 * 1024 * 1024;
const MAX_ENTRIES: usize = 100_000;

/// Reads the variable blocks of the root `*.tf` / `*.tofu` files of a bundle (tar.gz).
pub fn declarations(bundle: &[u8]) -> Declarations {
    let mut out = Declarations {
        vars: BTreeMap::new(),
        complete: true,
    };
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bundle).take(MAX_SCANNED));
    let Ok(entries) = ar.entries() else {
        out.complete = false;
        return out;
    };
    let mut budget = MAX_SOURCE;
    for (n, e) in entries.enumerate() {
        if n >= MAX_ENTRIES {
            out.complete = false;
            break;
        }
        let Ok(mut e) = e else {
            out.complete = false;
            break;
        };
        let path = e
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = path.trim_start_matches("./");
        let root_file = !path.contains('/') && (path.ends_with(".tf") || path.ends_with(".tofu"));
        if !root_file {
            continue;
        }
        let mut src = String::new();
        let read = (&mut e).take(budget + 1).read_to_string(&mut src);
        if read.is_err() || src.len() as u64 > budget {
            out.complete = false;
            break;
        }
        budget -= src.len() as u64;
        match hcl::parse(&src) {
            Ok(body) => collect(&body, &mut out.vars),
            Err(_) => out.complete = false,
        }
    }
    out
}

fn collect(body: &hcl::Body, vars: &mut BTreeMap<String, Declared>) {
    for b in body.blocks().filter(|b| b.identifier() == "variable") {
        let Some(name) = b.labels().first().map(|l| l.as_str().to_string()) else {
            continue;
        };
        let attr = |k: &str| {
            b.body()
                .attributes()
                .find(|a| a.key() == k)
                .map(|a| a.expr())
        };
        let sensitive = matches!(attr("sensitive"), Some(hcl::Expression::Bool(true)));
        let expression = match attr("type") {
            None => false,
            Some(hcl::Expression::Variable(v)) => {
                !matches!(v.as_str(), "string" | "number" | "bool")
            }
            Some(_) => true,
        };
        vars.insert(
            name,
            Declared {
                sensitive,
                expression,
            },
        );
    }
}

/// The name of the variables file a task gets (first of its `-var-file`s, 0600 in its directory).
pub const VARS_FILE: &str = "tofuflow-vars.tfvars";

/// Writes `value` as an HCL quoted string (no interpolation: `${` and `%{` are escaped).
pub fn hcl_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The variables file for `values` (as given with `-var`): one `name = value` line each,
/// literal or expression as the declaration says.
pub fn render(values: &BTreeMap<String, String>, declared: &BTreeMap<String, Declared>) -> String {
    let mut out =
        String::from("# Written by tofuflow: this run's variables (never on a command line).\n");
    for (k, v) in values {
        let expression = declared.get(k).is_some_and(|d| d.expression);
        if expression {
            out.push_str(&format!("{k} = {v}\n"));
        } else {
            out.push_str(&format!("{k} = {}\n", hcl_quote(v)));
        }
    }
    out
}

/// Every string (and number) inside a JSON value.
fn leaves(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| leaves(x, out)),
        _ => {}
    }
}

/// The values of the `sensitive` variables among `names` set by a variables file (`.tfvars`
/// HCL or `.tfvars.json`), each string inside them separately.
fn secrets_in_file(name: &str, content: &[u8], sensitive: &BTreeSet<String>) -> Vec<String> {
    let text = String::from_utf8_lossy(content);
    let top: serde_json::Map<String, serde_json::Value> = if name.ends_with(".json") {
        serde_json::from_str(&text).unwrap_or_default()
    } else {
        hcl::from_str(&text).unwrap_or_default()
    };
    let mut out = Vec::new();
    for (k, v) in &top {
        if sensitive.contains(k) {
            leaves(v, &mut out);
        }
    }
    out
}

/// What the agent must mask in a run's log: the values of its sensitive variables, as given with
/// `-var` (whole, and each quoted string of an expression) or in its variables files.
pub fn secrets(
    values: &BTreeMap<String, String>,
    files: &[(String, Vec<u8>)],
    sensitive: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in values.iter().filter(|(k, _)| sensitive.contains(*k)) {
        out.push(v.clone());
        if let Ok(parsed) = hcl::from_str::<serde_json::Value>(&format!("{k} = {v}")) {
            leaves(&parsed, &mut out);
        }
    }
    for (name, content) in files {
        out.extend(secrets_in_file(name, content, sensitive));
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, text) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, text.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn declarations_say_sensitive_and_expression() {
        let d = declarations(&bundle(&[
            (
                "main.tf",
                "variable \"pw\" {\n  type = string\n  sensitive = true\n}\nvariable \"n\" { type = number }\nvariable \"tags\" { type = map(string) }\nvariable \"free\" {}\n",
            ),
            ("sub/other.tf", "variable \"nested\" {}\n"),
            ("vars.tofu", "variable \"any\" { type = any }\n"),
        ]));
        assert!(d.complete);
        let v = |n: &str| d.vars.get(n).cloned();
        assert_eq!(
            v("pw"),
            Some(Declared {
                sensitive: true,
                expression: false
            })
        );
        assert!(!v("n").unwrap().expression);
        assert!(v("tags").unwrap().expression && v("any").unwrap().expression);
        assert!(!v("free").unwrap().expression);
        assert_eq!(v("nested"), None, "only the root module's files");
        assert!(!declarations(&bundle(&[("bad.tf", "variable {{{")])).complete);
        assert!(!declarations(b"not a tarball").complete);
    }

    #[test]
    fn the_variables_file_keeps_var_semantics() {
        let declared = BTreeMap::from([(
            "tags".to_string(),
            Declared {
                sensitive: false,
                expression: true,
            },
        )]);
        let values = BTreeMap::from([
            ("pw".to_string(), "a\"b\\c ${x} %{y}\nz".to_string()),
            ("tags".to_string(), "{a = \"b\"}".to_string()),
        ]);
        let text = render(&values, &declared);
        assert!(
            text.contains("pw = \"a\\\"b\\\\c $${x} %%{y}\\nz\"\n"),
            "{text}"
        );
        assert!(text.contains("tags = {a = \"b\"}\n"), "{text}");
        // It reads back as exactly the values given.
        let back: serde_json::Value = hcl::from_str(&text).unwrap();
        assert_eq!(back["pw"], "a\"b\\c ${x} %{y}\nz");
        assert_eq!(back["tags"]["a"], "b");
    }

    #[test]
    fn secrets_come_from_vars_and_files_of_sensitive_variables_only() {
        let sensitive = BTreeSet::from(["pw".to_string(), "keys".to_string()]);
        let values = BTreeMap::from([
            ("pw".to_string(), "hunter2-canary".to_string()),
            ("region".to_string(), "eu-west-1".to_string()),
            ("keys".to_string(), "[\"k-one\", \"k-two\"]".to_string()),
        ]);
        let files = vec![
            (
                "a.tfvars".to_string(),
                b"pw = \"from-hcl-file\"\nregion = \"x\"\n".to_vec(),
            ),
            (
                "b.tfvars.json".to_string(),
                br#"{"keys": ["json-key"], "other": "no"}"#.to_vec(),
            ),
        ];
        let s = secrets(&values, &files, &sensitive);
        for want in [
            "hunter2-canary",
            "k-one",
            "k-two",
            "from-hcl-file",
            "json-key",
        ] {
            assert!(s.contains(&want.to_string()), "{want} in {s:?}");
        }
        for not in ["eu-west-1", "x", "no"] {
            assert!(!s.contains(&not.to_string()), "{not} not in {s:?}");
        }
    }

    #[test]
    fn a_decompression_bomb_costs_a_bounded_scan() {
        use std::io::Write;
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(200 * 1024 * 1024);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(
            &mut h,
            "zeros.bin",
            std::io::repeat(0).take(200 * 1024 * 1024),
        )
        .unwrap();
        let src = b"variable \"a\" {}\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(src.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "main.tf", &src[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar.into_inner().unwrap()).unwrap();
        let t = std::time::Instant::now();
        let d = declarations(&gz.finish().unwrap());
        assert!(!d.complete, "the declarations after the bomb are not read");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t.elapsed()
        );
    }
}
