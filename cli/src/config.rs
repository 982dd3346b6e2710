//! The CLI's config file and where each setting comes from.
//!
//! `tofuflow login` keeps the coordinator's URL and the user's token in
//! `$XDG_CONFIG_HOME/tofuflow/config.toml` (else `~/.config/tofuflow/config.toml`, or the file
//! `TOFUFLOW_CONFIG_FILE` names), mode 0600 in a 0700 directory. A setting given as a flag wins
//! over its environment variable, which wins over the file, which wins over the default.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The coordinator's address when nothing says otherwise.
pub const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:7700";

/// Names the config file to use instead of the default one.
pub const CONFIG_FILE_ENV: &str = "TOFUFLOW_CONFIG_FILE";

/// What the config file holds. Other keys are ignored when read and dropped when written.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Config {
    pub coordinator: Option<String>,
    pub token: Option<String>,
}

/// Where a setting came from, for `whoami` and error messages (never the value itself).
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Flag,
    Env,
    File(PathBuf),
    Default,
}

impl Origin {
    /// Describes the origin of the setting `flag`, whose environment variable is `env`.
    pub fn describe(&self, flag: &str, env: &str) -> String {
        match self {
            Origin::Flag => flag.to_string(),
            Origin::Env => env.to_string(),
            Origin::File(p) => p.display().to_string(),
            Origin::Default => "the default".to_string(),
        }
    }
}

/// The coordinator and token a command uses, with where each came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub coordinator: String,
    pub coordinator_from: Origin,
    pub token: Option<String>,
    pub token_from: Origin,
}

/// Applies the precedence: `given` is what the flag or the environment said (clap has already
/// put the flag first), then the file, then the default. Empty values count as unset.
pub fn resolve(
    coordinator: Option<(String, Origin)>,
    token: Option<(String, Origin)>,
    file: &Config,
    file_path: Option<&Path>,
) -> Settings {
    let from_file = || {
        file_path
            .map(|p| Origin::File(p.to_path_buf()))
            .unwrap_or(Origin::Default)
    };
    let pick = |given: Option<(String, Origin)>, saved: &Option<String>| {
        given
            .filter(|(v, _)| !v.trim().is_empty())
            .map(|(v, o)| (v.trim().to_string(), o))
            .or_else(|| {
                saved
                    .as_ref()
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .map(|v| (v, from_file()))
            })
    };
    let (coordinator, coordinator_from) = pick(coordinator, &file.coordinator)
        .unwrap_or_else(|| (DEFAULT_COORDINATOR.to_string(), Origin::Default));
    let (token, token_from) = match pick(token, &file.token) {
        Some((t, o)) => (Some(t), o),
        None => (None, Origin::Default),
    };
    Settings {
        coordinator,
        coordinator_from,
        token,
        token_from,
    }
}

/// The config file's path from the environment: `TOFUFLOW_CONFIG_FILE`, else
/// `$XDG_CONFIG_HOME/tofuflow/config.toml`, else `$HOME/.config/tofuflow/config.toml`.
pub fn path() -> Result<PathBuf, String> {
    path_from(
        std::env::var_os(CONFIG_FILE_ENV),
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
    .ok_or_else(|| format!("cannot tell where the config file goes: set {CONFIG_FILE_ENV} or HOME"))
}

fn path_from(
    file: Option<std::ffi::OsString>,
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let set = |v: Option<std::ffi::OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(f) = set(file) {
        return Some(f);
    }
    // The XDG spec says a relative XDG_CONFIG_HOME is invalid and to be ignored.
    let dir = set(xdg)
        .filter(|d| d.is_absolute())
        .or_else(|| set(home).map(|h| h.join(".config")))?;
    Some(dir.join("tofuflow").join("config.toml"))
}

impl Config {
    /// Parses the file's text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, String> {
        let table: toml::Table = text.parse().map_err(|e| {
            format!(
                "cannot read {}: not valid TOML ({e}); fix it, or remove it and run `tofuflow login` again",
                path.display()
            )
        })?;
        let string = |key: &str| match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!(
                "cannot read {}: `{key}` must be a string",
                path.display()
            )),
        };
        Ok(Config {
            coordinator: string("coordinator")?,
            token: string("token")?,
        })
    }

    /// Reads the file; a missing file is an empty config. Warns (on stderr) when a file holding
    /// a token can be read by others.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let config = Config::parse(&text, path)?;
        if config.token.is_some() {
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    eprintln!(
                        "warning: {} holds your token but others may read it (mode {mode:04o}): run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    );
                }
            }
        }
        Ok(config)
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# tofuflow CLI settings, written by `tofuflow login`. Keep this file private: it holds your token.\n",
        );
        if let Some(c) = &self.coordinator {
            out.push_str(&format!("coordinator = {}\n", quote(c)));
        }
        if let Some(t) = &self.token {
            out.push_str(&format!("token = {}\n", quote(t)));
        }
        out
    }

    /// Writes the file with mode 0600, creating its directory with mode 0700 if missing. The
    /// text goes to a temporary file first, renamed over the old one, so a crash never leaves
    /// half a file or a readable copy.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config.toml".into());
        let tmp = dir.join(format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            // The umask can only remove bits, but say it outright.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Config {
        Config {
            coordinator: Some("http://saved:7700".into()),
            token: Some("tfu_saved".into()),
        }
    }

    #[test]
    fn a_flag_or_env_beats_the_file_which_beats_the_default() {
        let p = Path::new("/c/config.toml");
        let s = resolve(
            Some(("http://flag:7700".into(), Origin::Flag)),
            Some(("tfu_env".into(), Origin::Env)),
            &file(),
            Some(p),
        );
        assert_eq!(s.coordinator, "http://flag:7700");
        assert_eq!(s.coordinator_from, Origin::Flag);
        assert_eq!(s.token.as_deref(), Some("tfu_env"));
        assert_eq!(s.token_from, Origin::Env);

        let s = resolve(None, None, &file(), Some(p));
        assert_eq!(s.coordinator, "http://saved:7700");
        assert_eq!(s.coordinator_from, Origin::File(p.into()));
        assert_eq!(s.token.as_deref(), Some("tfu_saved"));

        let s = resolve(None, None, &Config::default(), Some(p));
        assert_eq!(s.coordinator, DEFAULT_COORDINATOR);
        assert_eq!(s.coordinator_from, Origin::Default);
        assert_eq!(s.token, None);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = resolve(
            Some(("  ".into(), Origin::Env)),
            Some(("".into(), Origin::Env)),
            &file(),
            None,
        );
        assert_eq!(s.coordinator, "http://saved:7700");
        assert_eq!(s.token.as_deref(), Some("tfu_saved"));
        let blank = Config {
            coordinator: Some("".into()),
            token: Some(" ".into()),
        };
        let s = resolve(None, None, &blank, None);
        assert_eq!(s.coordinator, DEFAULT_COORDINATOR);
        assert_eq!(s.token, None);
    }

    #[test]
    fn the_path_follows_the_override_then_xdg_then_home() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            path_from(os("/x/my.toml"), os("/xdg"), os("/home/a")),
            Some(PathBuf::from("/x/my.toml"))
        );
        assert_eq!(
            path_from(None, os("/xdg"), os("/home/a")),
            Some(PathBuf::from("/xdg/tofuflow/config.toml"))
        );
        assert_eq!(
            path_from(os(""), os("relative"), os("/home/a")),
            Some(PathBuf::from("/home/a/.config/tofuflow/config.toml"))
        );
        assert_eq!(path_from(None, None, None), None);
    }

    #[test]
    fn the_file_round_trips_and_bad_files_say_what_is_wrong() {
        let c = Config {
            coordinator: Some("http://c:7700".into()),
            token: Some("tfu_a\"b\\c".into()),
        };
        let p = Path::new("/c/config.toml");
        assert_eq!(Config::parse(&c.render(), p).unwrap(), c);
        assert_eq!(Config::parse("", p).unwrap(), Config::default());
        assert_eq!(
            Config::parse("coordinator = \"http://c\"\nother = 1\n", p)
                .unwrap()
                .coordinator
                .as_deref(),
            Some("http://c")
        );
        let e = Config::parse("token = 5", p).unwrap_err();
        assert!(e.contains("`token` must be a string"), "{e}");
        let e = Config::parse("token = ", p).unwrap_err();
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn saving_makes_a_private_file_in_a_private_directory() {
        let root = std::env::temp_dir().join(format!("tofuflow-cli-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let path = root.join("sub").join("config.toml");
        let c = file();
        c.save(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&root.join("sub")), 0o700);
        assert_eq!(Config::load(&path).unwrap(), c);

        // An existing looser file is replaced by a private one.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let without_token = Config {
            token: None,
            ..c.clone()
        };
        without_token.save(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(Config::load(&path).unwrap(), without_token);
        assert_eq!(
            Config::load(&root.join("missing.toml")).unwrap(),
            Config::default()
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
