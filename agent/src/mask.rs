//! Masking of a task's secrets in its log: every value the task was given that must not be seen
//! (the state-backend password, sensitive variable values) is replaced by `(sensitive)` in every
//! line before it leaves the agent. Lines are masked whole (the output readers join what tofu
//! wrote across reads into lines first); a secret spanning lines is masked line by line.

/// Secrets shorter than this are not masked: masking "1" or "abc" everywhere would ruin the log
/// and protect nothing.
pub const MIN_SECRET_LEN: usize = 4;

/// What stands in for a masked value.
pub const MASK: &str = "(sensitive)";

/// The secrets of one task.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl Masker {
    /// A masker for `secrets`; each line of a multi-line secret counts on its own.
    pub fn new<I, S>(secrets: I) -> Masker
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all: Vec<String> = secrets
            .into_iter()
            .flat_map(|s| {
                s.as_ref()
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= MIN_SECRET_LEN)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Masker { secrets: all }
    }

    /// `line` with every secret replaced by [`MASK`].
    pub fn mask(&self, line: String) -> String {
        if !self.secrets.iter().any(|s| line.contains(s.as_str())) {
            return line;
        }
        let mut out = line;
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_replaced_and_nothing_else() {
        let m = Masker::new(["hunter22", "pass-hunter22-word", "ab", "line-one\nline-two"]);
        assert_eq!(
            m.mask("TF_HTTP_PASSWORD=pass-hunter22-word x=hunter22".into()),
            "TF_HTTP_PASSWORD=(sensitive) x=(sensitive)"
        );
        assert_eq!(m.mask("ab stays: too short".into()), "ab stays: too short");
        assert_eq!(m.mask("a line-two b".into()), "a (sensitive) b");
        assert_eq!(m.mask("nothing here".into()), "nothing here");
        assert_eq!(
            m.mask("hunter22hunter22".into()),
            "(sensitive)(sensitive)",
            "repeated"
        );
    }
}
