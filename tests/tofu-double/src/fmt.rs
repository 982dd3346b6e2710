//! `tofu fmt`: the canonical layout OpenTofu's formatter enforces for the cases modules meet in
//! practice: two-space indentation by nesting, no trailing whitespace, `=` aligned across
//! consecutive single-line attributes at one level, one final newline.

/// Returns the canonical form of `src`.
pub fn format(src: &str) -> String {
    let mut depth: i32 = 0;
    let mut lines: Vec<(i32, String)> = Vec::new();
    let mut heredoc: Option<String> = None;
    for raw in src.lines() {
        if let Some(end) = &heredoc {
            if raw.trim() == end {
                heredoc = None;
                lines.push((depth, raw.trim().to_string()));
            } else {
                lines.push((-1, raw.to_string()));
            }
            continue;
        }
        let t = raw.trim();
        if t.is_empty() {
            lines.push((0, String::new()));
            continue;
        }
        let (opens, closes, leading_closes, hd) = scan(t);
        let d = depth - leading_closes;
        lines.push((d.max(0), t.to_string()));
        depth += opens - closes;
        if depth < 0 {
            depth = 0;
        }
        heredoc = hd;
    }
    // Align `=` in runs of attribute lines at the same depth.
    let mut i = 0;
    while i < lines.len() {
        if attr_key(&lines[i]).is_none() {
            i += 1;
            continue;
        }
        let d = lines[i].0;
        let mut j = i;
        while j < lines.len() && lines[j].0 == d && attr_key(&lines[j]).is_some() {
            j += 1;
        }
        let width = (i..j)
            .map(|k| attr_key(&lines[k]).unwrap().0.len())
            .max()
            .unwrap_or(0);
        for line in lines.iter_mut().take(j).skip(i) {
            let (key, rest) = attr_key(line)
                .map(|(k, r)| (k.to_string(), r.to_string()))
                .unwrap();
            line.1 = format!("{key:width$} = {rest}");
        }
        i = j;
    }
    let mut out = String::new();
    for (d, l) in &lines {
        if *d < 0 {
            out.push_str(l);
        } else if !l.is_empty() {
            out.push_str(&"  ".repeat(*d as usize));
            out.push_str(l);
        }
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    if out.trim().is_empty() {
        return String::new();
    }
    out
}

fn attr_key(line: &(i32, String)) -> Option<(&str, &str)> {
    if line.0 < 0 {
        return None;
    }
    let t = line.1.as_str();
    let eq = t.find('=')?;
    let key = t[..eq].trim_end();
    let rest = t[eq + 1..].trim_start();
    if t[eq + 1..].starts_with('=') || key.is_empty() {
        return None;
    }
    let ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '"')
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '"');
    // A value that continues on the next lines (`x = {`) is not aligned with its neighbours.
    let (opens, closes, _, heredoc) = scan(rest);
    let single_line = opens <= closes && heredoc.is_none();
    (ok && single_line).then_some((key, rest))
}

/// Counts bracket opens/closes outside strings and comments; returns a heredoc terminator if the
/// line starts one.
fn scan(t: &str) -> (i32, i32, i32, Option<String>) {
    let (mut opens, mut closes, mut leading) = (0, 0, 0);
    let mut in_str = false;
    let mut seen_other = false;
    let b: Vec<char> = t.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == '\\' {
                i += 2;
                continue;
            }
            if c == '"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                seen_other = true;
            }
            '#' => break,
            '/' if b.get(i + 1) == Some(&'/') => break,
            '{' | '[' | '(' => {
                opens += 1;
                seen_other = true;
            }
            '}' | ']' | ')' => {
                closes += 1;
                if !seen_other {
                    leading += 1;
                }
            }
            '<' if b.get(i + 1) == Some(&'<') => {
                let rest: String = b[i + 2..].iter().collect();
                let tag = rest.trim_start_matches('-').trim().to_string();
                if !tag.is_empty() && tag.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    return (opens, closes, leading, Some(tag));
                }
            }
            c if !c.is_whitespace() => seen_other = true,
            _ => {}
        }
        i += 1;
    }
    (opens, closes, leading, None)
}

#[cfg(test)]
mod tests {
    use super::format;

    #[test]
    fn canonical_layout() {
        let src = "resource \"terraform_data\" \"x\" {\ninput = 1\n    triggers_replace = 2  \n}\n";
        assert_eq!(
            format(src),
            "resource \"terraform_data\" \"x\" {\n  input            = 1\n  triggers_replace = 2\n}\n"
        );
        let good = "variable \"a\" {\n  type    = string\n  default = \"x\"\n}\n";
        assert_eq!(format(good), good);
        // As `terraform fmt` leaves it: a multi-line value is not aligned with its neighbours.
        let multi = "locals {\n  pool_name = \"x\"\n  labels = {\n    a = 1\n  }\n}\n";
        assert_eq!(format(multi), multi);
    }
}
