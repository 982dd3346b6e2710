//! Masking of a task's secrets: every value the task was given that must not be seen (the
//! state-backend password, sensitive variable values, connection values, the ID token) is
//! replaced by `(sensitive)` before a line leaves the agent, and so are the forms a program
//! may print it in: base64 (standard and URL-safe, at any alignment inside a longer encoded
//! text), percent- and form-encoded, JSON-escaped (Go's HTML-safe escaping too). A multi-line
//! secret is masked line by line. Lines are masked as one stream ([`Masker::mask_stream`]):
//! a secret split across consecutive lines is masked in every part, and a line whose end may
//! begin a secret waits for the next line. The same masker guards the agent's own log
//! ([`Registry`], [`MaskingWriter`]).

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use base64::Engine;
use std::sync::{Arc, RwLock};

/// Secrets shorter than this are not masked: masking "1" or "abc" everywhere would ruin the log
/// and protect nothing. (Connections refuse values shorter than
/// `tofuflow_proto::connections::MIN_SECRET_LEN`.)
pub const MIN_SECRET_LEN: usize = 4;

/// Encoded forms shorter than this are not masked (too likely to occur by chance).
const MIN_ENCODED_LEN: usize = 8;

/// How far back a line's end is compared with the beginnings of secrets.
const MAX_SPLIT: usize = 4096;

/// What stands in for a masked value.
pub const MASK: &str = "(sensitive)";

/// The secrets of one task (or of every running task, for the agent's own log).
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Every form of every secret, sorted.
    patterns: Vec<String>,
    ac: Option<AhoCorasick>,
}

impl Masker {
    /// A masker for `secrets`; each line of a multi-line secret counts on its own.
    pub fn new<I, S>(secrets: I) -> Masker
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut m = Masker::default();
        m.extend(secrets);
        m
    }

    /// Adds `secrets` (a renewed token, another task's secrets).
    pub fn extend<I, S>(&mut self, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for s in secrets {
            for line in s.as_ref().lines().map(str::trim) {
                if line.len() >= MIN_SECRET_LEN {
                    self.patterns.extend(forms(line));
                }
            }
        }
        self.patterns.sort();
        self.patterns.dedup();
        self.ac = automaton(&self.patterns);
    }

    /// The masked forms, for the agent's own log.
    fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// `line` with every secret replaced by [`MASK`].
    pub fn mask(&self, line: String) -> String {
        let found = self.matches(&line);
        if found.is_empty() {
            return line;
        }
        render(&line, 0, &found)
    }

    /// Masks consecutive `lines` as one text: a secret split across them is masked in every
    /// part. Returns how many lines at the end were left as they are because their end may
    /// begin a secret the next line completes: give them again, in front of the next lines
    /// (or with `last`, when no line follows, and nothing is held back).
    pub fn mask_stream(&self, lines: &mut [String], last: bool) -> usize {
        if self.ac.is_none() || lines.is_empty() {
            return 0;
        }
        let text = lines.concat();
        let found = self.matches(&text);
        let from = found.last().map(|m| m.1).unwrap_or(0);
        let hold_at = if last {
            text.len()
        } else {
            self.pending_from(&text, from)
        };
        let mut start = 0;
        let count = lines.len();
        for (i, line) in lines.iter_mut().enumerate() {
            let end = start + line.len();
            if end > hold_at {
                return count - i;
            }
            let here: Vec<(usize, usize)> = found
                .iter()
                .filter(|m| m.0 < end && m.1 > start)
                .map(|m| (m.0.max(start) - start, m.1.min(end) - start))
                .collect();
            if !here.is_empty() {
                *line = render(line, 0, &here);
            }
            start = end;
        }
        0
    }

    /// The byte ranges of `text` that are secrets, merged where they overlap.
    fn matches(&self, text: &str) -> Vec<(usize, usize)> {
        let Some(ac) = &self.ac else {
            return Vec::new();
        };
        let mut all: Vec<(usize, usize)> = ac
            .find_overlapping_iter(text)
            .map(|m| (m.start(), m.end()))
            .collect();
        all.sort();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(all.len());
        for (s, e) in all {
            match merged.last_mut() {
                Some(last) if s < last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// Where the longest end of `text[from..]` that begins some secret starts (`text.len()`
    /// when none does).
    fn pending_from(&self, text: &str, from: usize) -> usize {
        let tail = &text[from..];
        let mut best = 0;
        for p in &self.patterns {
            let longest = (p.len() - 1).min(tail.len()).min(MAX_SPLIT);
            for k in (best + 1..=longest).rev() {
                if p.is_char_boundary(k) && tail.ends_with(&p[..k]) {
                    best = k;
                    break;
                }
            }
        }
        text.len() - best
    }
}

/// `text[offset..]` with the `ranges` (relative to `offset`) replaced by [`MASK`].
fn render(text: &str, offset: usize, ranges: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = offset;
    for &(s, e) in ranges {
        out.push_str(&text[at..s]);
        out.push_str(MASK);
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

/// A secret and the forms a program may print it in.
/// The matcher over `patterns`: a contiguous NFA, which builds in microseconds where the DFA
/// the crate would pick for a few patterns takes milliseconds for long ones (an ID token's
/// every encoded form), and every task builds two before its first command.
fn automaton(patterns: &[String]) -> Option<AhoCorasick> {
    AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::ContiguousNFA))
        .build(patterns)
        .ok()
}

fn forms(s: &str) -> Vec<String> {
    let mut out = vec![s.to_string()];
    let b = s.as_bytes();
    for engine in [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        // The characters that depend on the secret's bytes only, at each alignment.
        for pad in 0..3 {
            let mut bytes = vec![0u8; pad];
            bytes.extend_from_slice(b);
            let enc = engine.encode(&bytes);
            let (start, end) = ((8 * pad).div_ceil(6), 8 * (pad + b.len()) / 6);
            if end > start {
                out.push(enc[start..end].to_string());
            }
        }
    }
    out.push(percent(s, false, true));
    out.push(percent(s, false, false));
    out.push(percent(s, true, true));
    if let Ok(j) = serde_json::to_string(s) {
        let inner = j[1..j.len() - 1].to_string();
        out.push(
            inner
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026"),
        );
        out.push(inner);
    }
    out.retain(|f| f == s || f.len() >= MIN_ENCODED_LEN);
    out
}

/// Percent-encoding (RFC 3986 unreserved kept); `form`: a space is `+`.
fn percent(s: &str, form: bool, upper: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else if form && c == b' ' {
            out.push('+');
        } else if upper {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push_str(&format!("%{c:02x}"));
        }
    }
    out
}

/// The secrets of every task running now, for the agent's own log.
#[derive(Clone, Default)]
pub struct Registry {
    tasks: Arc<RwLock<Vec<(String, Masker)>>>,
    all: Arc<RwLock<Masker>>,
}

impl Registry {
    /// The agent's registry.
    pub fn global() -> &'static Registry {
        static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
        R.get_or_init(Registry::default)
    }

    /// Masks `task`'s secrets in the agent's log until [`Registry::remove`].
    pub fn add(&self, task: &str, m: &Masker) {
        if let Ok(mut t) = self.tasks.write() {
            t.retain(|(id, _)| id != task);
            t.push((task.to_string(), m.clone()));
        }
        self.rebuild();
    }

    /// The task ended.
    pub fn remove(&self, task: &str) {
        if let Ok(mut t) = self.tasks.write() {
            t.retain(|(id, _)| id != task);
        }
        self.rebuild();
    }

    fn rebuild(&self) {
        let mut m = Masker::default();
        if let Ok(t) = self.tasks.read() {
            m.patterns = t.iter().flat_map(|(_, m)| m.patterns().to_vec()).collect();
            m.patterns.sort();
            m.patterns.dedup();
            m.ac = automaton(&m.patterns);
        }
        if let Ok(mut all) = self.all.write() {
            *all = m;
        }
    }

    /// `text` with every running task's secrets masked.
    pub fn mask(&self, text: String) -> String {
        match self.all.read() {
            Ok(m) => m.mask(text),
            Err(_) => text,
        }
    }
}

/// The agent's log writer: each record is masked with [`Registry::global`] before it is
/// written to standard error.
#[derive(Clone, Copy, Default)]
pub struct MaskingWriter;

impl std::io::Write for MaskingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf).into_owned();
        let masked = Registry::global().mask(text);
        std::io::stderr().write_all(masked.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests;
