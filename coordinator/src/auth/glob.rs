//! Workspace globs, as roles and rules are granted on: `*` matches one path segment, `**` any
//! number of them (`ml/*`, `prod/**`, `**`).

/// A checked workspace glob.
#[derive(Clone, Debug)]
pub struct WorkspaceGlob {
    text: String,
    matcher: globset::GlobMatcher,
}

impl WorkspaceGlob {
    /// Parses `text`, refusing what is not a workspace glob.
    pub fn parse(text: &str) -> Result<WorkspaceGlob, String> {
        let t = text.trim();
        let bad = |why: &str| {
            Err(format!(
                "{text:?} is not a workspace glob ({why}): use names and `/`, with `*` for one segment and `**` for any number, e.g. `ml/*` or `prod/**`"
            ))
        };
        if t.is_empty() || t.len() > 200 {
            return bad("empty or longer than 200 characters");
        }
        if let Some(c) = t
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_./*?".contains(*c)))
        {
            return bad(&format!("the character {c:?} is not allowed"));
        }
        if t.starts_with('/') || t.ends_with('/') || t.contains("//") {
            return bad("empty path segment");
        }
        let glob = globset::GlobBuilder::new(t)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{text:?} is not a workspace glob: {e}"))?;
        Ok(WorkspaceGlob {
            text: t.to_string(),
            matcher: glob.compile_matcher(),
        })
    }

    /// Whether `workspace` matches.
    pub fn matches(&self, workspace: &str) -> bool {
        self.matcher.is_match(workspace)
    }

    /// True for `**`: every workspace, and what actions about no one workspace need.
    pub fn is_everything(&self) -> bool {
        self.text == "**"
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for WorkspaceGlob {
    fn eq(&self, o: &Self) -> bool {
        self.text == o.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_star_is_one_segment_and_two_are_any_number() {
        let g = |t: &str| WorkspaceGlob::parse(t).unwrap();
        assert!(g("ml/*").matches("ml/a"));
        assert!(!g("ml/*").matches("ml/a/b"));
        assert!(!g("ml/*").matches("mlx/a"));
        assert!(g("prod/**").matches("prod/eu/gpu"));
        assert!(g("prod/**").matches("prod/a"));
        assert!(!g("prod/**").matches("production/a"));
        assert!(g("**").matches("anything/at/all"));
        assert!(g("**").is_everything() && !g("ml/**").is_everything());
        assert!(g("team-?/x").matches("team-a/x"));
        assert!(g("exact/name").matches("exact/name") && !g("exact/name").matches("exact/names"));
    }

    #[test]
    fn what_is_not_a_glob_is_refused_with_the_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("/abs", "empty path segment"),
            ("a//b", "empty path segment"),
            ("a b", "' '"),
            ("a/{b", "'{'"),
            ("a;rm", "';'"),
        ] {
            let e = WorkspaceGlob::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
