//! Bundles: fetched from the coordinator as a stream, verified against their SHA-256 digest,
//! cached by digest, and extracted into the task's working directory under strict rules. A
//! hostile archive is refused with the entry and the reason, never half-unpacked outside.

use crate::error::BundleError;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Limits on what an archive may expand to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_files: u64,
    pub max_depth: usize,
    /// Largest allowed ratio of unpacked bytes to archive bytes.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1 << 30,
            max_files: 100_000,
            max_depth: 64,
            max_ratio: 200,
        }
    }
}

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Checks that `data` is what `digest` names.
pub fn verify(digest: &str, data: &[u8]) -> Result<(), BundleError> {
    let got = digest_of(data);
    if got != digest {
        return Err(BundleError::DigestMismatch {
            expected: digest.to_string(),
            got,
        });
    }
    Ok(())
}

/// The depth of an entry's path, or why the path is refused.
fn depth_and_check(p: &Path) -> Result<usize, &'static str> {
    let mut depth = 0;
    for c in p.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(depth)
}

/// Resolves `target` (of a link at `link_rel`) lexically; `None` if it leaves the tree.
fn inside(link_rel: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut parts: Vec<&std::ffi::OsStr> = link_rel
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Extracts a tar.gz into `dest` (which must exist and be empty), refusing anything that could
/// write outside it or exhaust the host. A first pass reads every header without writing
/// anything, so a refused archive leaves nothing behind; the second pass extracts with the same
/// checks plus the file system's view.
pub fn extract(archive: &[u8], dest: &Path, limits: Limits) -> Result<u64, BundleError> {
    walk(archive, dest, limits, false)?;
    walk(archive, dest, limits, true)
}

/// A relative path without `.` components.
fn normal(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// One pass over an archive: the checks and counts, and with `write` the extraction.
struct Walk<'a> {
    dest: &'a Path,
    limits: Limits,
    write: bool,
    /// Most bytes the archive may unpack to (its size times the ratio limit, at least 1 MiB).
    ratio_cap: u64,
    total: u64,
    files: u64,
    /// Regular files seen so far: a hard link may only name one of them.
    seen_files: std::collections::HashSet<PathBuf>,
}

/// Why an entry is refused, naming it.
type Reject<'r> = &'r dyn Fn(&str) -> BundleError;

fn walk(archive: &[u8], dest: &Path, limits: Limits, write: bool) -> Result<u64, BundleError> {
    let gz = flate2::read::GzDecoder::new(archive);
    let mut tar = tar::Archive::new(gz);
    let mut w = Walk {
        dest,
        limits,
        write,
        ratio_cap: (archive.len() as u64)
            .saturating_mul(limits.max_ratio)
            .max(1 << 20),
        total: 0,
        files: 0,
        seen_files: Default::default(),
    };
    let entries = tar.entries().map_err(BundleError::NotAnArchive)?;
    for entry in entries {
        let mut e = entry.map_err(BundleError::Corrupt)?;
        w.entry(&mut e)?;
    }
    Ok(w.total)
}

impl Walk<'_> {
    /// Checks (and with `write` extracts) one entry.
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<(), BundleError> {
        let rel = e.path().map_err(BundleError::UnreadablePath)?.into_owned();
        let name = rel.display().to_string();
        let reject = |why: &str| BundleError::Rejected {
            name: name.clone(),
            why: why.to_string(),
        };
        let depth = depth_and_check(&rel).map_err(reject)?;
        if depth == 0 {
            return Ok(());
        }
        if depth > self.limits.max_depth {
            return Err(reject(&format!(
                "deeper than {} levels",
                self.limits.max_depth
            )));
        }
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(reject(&format!(
                "more than {} entries",
                self.limits.max_files
            )));
        }
        let mode = e.header().mode().unwrap_or(0o644);
        if mode & 0o6000 != 0 {
            return Err(reject("setuid/setgid bit set"));
        }
        let out = self.dest.join(&rel);
        if let (true, Some(parent)) = (self.write, out.parent()) {
            self.parent_inside(parent, &reject)?;
        }
        match e.header().entry_type() {
            tar::EntryType::Directory if !self.write => {}
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&out).map_err(|err| reject(&err.to_string()))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.regular(e, &rel, &out, mode, &reject)?
            }
            tar::EntryType::Symlink => self.symlink(e, &rel, &out, &reject)?,
            tar::EntryType::Link => self.hard_link(e, &out, &reject)?,
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                return Err(reject(&format!(
                    "{other:?} entries (devices, FIFOs, ...) are not allowed"
                )))
            }
        }
        Ok(())
    }

    /// Creates `parent`, which must never be a symlink that leads elsewhere.
    fn parent_inside(&self, parent: &Path, reject: Reject<'_>) -> Result<(), BundleError> {
        std::fs::create_dir_all(parent).map_err(|err| reject(&err.to_string()))?;
        let canon = parent
            .canonicalize()
            .map_err(|err| reject(&err.to_string()))?;
        if !canon.starts_with(
            self.dest
                .canonicalize()
                .map_err(|err| reject(&err.to_string()))?,
        ) {
            return Err(reject("its directory leads outside the bundle"));
        }
        Ok(())
    }

    /// A regular file: counted against the size limits, then written (0644 or 0755).
    fn regular<R: Read>(
        &mut self,
        e: &mut tar::Entry<R>,
        rel: &Path,
        out: &Path,
        mode: u32,
        reject: Reject<'_>,
    ) -> Result<(), BundleError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let size = e.header().size().unwrap_or(0);
        self.total += size;
        if self.total > self.limits.max_bytes {
            return Err(reject(&format!(
                "bundle expands beyond {} bytes",
                self.limits.max_bytes
            )));
        }
        if self.total > self.ratio_cap {
            return Err(reject(&format!(
                "bundle expands more than {}x its size (a compression bomb?)",
                self.limits.max_ratio
            )));
        }
        if !self.write {
            self.seen_files.insert(normal(rel));
            return Ok(());
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 })
            .open(out)
            .map_err(|err| reject(&format!("cannot create: {err}")))?;
        // Copy at most the declared size: a lying header cannot write more.
        let n = std::io::copy(&mut e.take(size), &mut f).map_err(|err| reject(&err.to_string()))?;
        if n != size {
            return Err(reject("truncated"));
        }
        let _ = std::fs::set_permissions(
            out,
            std::fs::Permissions::from_mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 }),
        );
        Ok(())
    }

    /// A symlink: only to a place inside the tree.
    fn symlink<R: Read>(
        &self,
        e: &tar::Entry<R>,
        rel: &Path,
        out: &Path,
        reject: Reject<'_>,
    ) -> Result<(), BundleError> {
        let target = e
            .link_name()
            .map_err(|err| reject(&err.to_string()))?
            .ok_or_else(|| reject("symlink without target"))?
            .into_owned();
        if inside(rel, &target).is_none() {
            return Err(reject(&format!(
                "symlink to {} points outside the bundle",
                target.display()
            )));
        }
        if self.write {
            std::os::unix::fs::symlink(&target, out).map_err(|err| reject(&err.to_string()))?;
        }
        Ok(())
    }

    /// A hard link: only to a regular file earlier in the bundle.
    fn hard_link<R: Read>(
        &self,
        e: &tar::Entry<R>,
        out: &Path,
        reject: Reject<'_>,
    ) -> Result<(), BundleError> {
        let target = e
            .link_name()
            .map_err(|err| reject(&err.to_string()))?
            .ok_or_else(|| reject("hard link without target"))?
            .into_owned();
        if depth_and_check(&target).is_err() {
            return Err(reject(&format!(
                "hard link to {} points outside the bundle",
                target.display()
            )));
        }
        if !self.write {
            if !self.seen_files.contains(&normal(&target)) {
                return Err(reject("hard link to a file not (yet) in the bundle"));
            }
            return Ok(());
        }
        let src = self.dest.join(&target);
        let meta = std::fs::symlink_metadata(&src)
            .map_err(|_| reject("hard link to a file not in the bundle"))?;
        if !meta.is_file() {
            return Err(reject("hard link to something that is not a regular file"));
        }
        std::fs::hard_link(&src, out).map_err(|err| reject(&err.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>)) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut b = tar::Builder::new(gz);
        build(&mut b);
        b.into_inner().unwrap().finish().unwrap()
    }

    fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        // Write the raw name so hostile paths survive (set_path refuses them).
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        h
    }

    fn file(
        b: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
        path: &str,
        data: &[u8],
        mode: u32,
    ) {
        let h = header(path, tar::EntryType::Regular, data.len() as u64, mode);
        b.append(&h, data).unwrap();
    }

    fn link(
        b: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
        path: &str,
        target: &str,
        kind: tar::EntryType,
    ) {
        let mut h = header(path, kind, 0, 0o777);
        let t = target.as_bytes();
        h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }

    fn dest() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("tofuflow-bundle-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_normal_module_extracts() {
        let a = tgz(|b| {
            file(
                b,
                "main.tf",
                b"resource \"terraform_data\" \"x\" {}\n",
                0o644,
            );
            file(b, "modules/net/vars.tf", b"variable \"a\" {}\n", 0o644);
            link(b, "modules/link.tf", "net/vars.tf", tar::EntryType::Symlink);
        });
        let d = dest();
        extract(&a, &d, Limits::default()).unwrap();
        assert!(d.join("modules/net/vars.tf").is_file());
        assert_eq!(
            std::fs::read_to_string(d.join("modules/link.tf")).unwrap(),
            "variable \"a\" {}\n"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn hostile_archives_are_refused_with_the_entry_named() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "dotdot",
                tgz(|b| file(b, "../escape.tf", b"x", 0o644)),
                "'..'",
            ),
            (
                "absolute",
                tgz(|b| file(b, "/etc/evil", b"x", 0o644)),
                "absolute",
            ),
            (
                "symlink out",
                tgz(|b| link(b, "ln", "../../etc", tar::EntryType::Symlink)),
                "outside",
            ),
            (
                "absolute symlink",
                tgz(|b| link(b, "ln", "/etc/passwd", tar::EntryType::Symlink)),
                "outside",
            ),
            (
                "hard link out",
                tgz(|b| link(b, "hl", "../../etc/passwd", tar::EntryType::Link)),
                "outside",
            ),
            ("setuid", tgz(|b| file(b, "suid", b"x", 0o4755)), "setuid"),
            (
                "device",
                tgz(|b| {
                    let h = header("dev", tar::EntryType::Char, 0, 0o644);
                    b.append(&h, std::io::empty()).unwrap();
                }),
                "not allowed",
            ),
            (
                "fifo",
                tgz(|b| {
                    let h = header("fifo", tar::EntryType::Fifo, 0, 0o644);
                    b.append(&h, std::io::empty()).unwrap();
                }),
                "not allowed",
            ),
        ];
        for (what, archive, why) in cases {
            let d = dest();
            let err = extract(&archive, &d, Limits::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("rejected") && err.contains(why),
                "{what}: {err}"
            );
            std::fs::remove_dir_all(&d).unwrap();
        }
        assert!(!std::env::temp_dir().join("escape.tf").exists());
    }

    #[test]
    fn a_refused_archive_writes_nothing_at_all() {
        // Good entries first, the bad one last: the checking pass refuses before any write.
        let a = tgz(|b| {
            file(b, "main.tf", b"locals {}\n", 0o644);
            file(b, "dir/more.tf", b"locals {}\n", 0o644);
            link(b, "ok", "main.tf", tar::EntryType::Link);
            file(b, "../x.tf", b"locals {}\n", 0o644);
        });
        let d = dest();
        let e = extract(&a, &d, Limits::default()).unwrap_err().to_string();
        assert!(e.contains("\"../x.tf\" rejected"), "{e}");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            0,
            "nothing was written"
        );
        // A hard link to a file that comes later (or never) is refused too.
        let a = tgz(|b| {
            link(b, "early", "main.tf", tar::EntryType::Link);
            file(b, "main.tf", b"locals {}\n", 0o644);
        });
        let e = extract(&a, &d, Limits::default()).unwrap_err().to_string();
        assert!(e.contains("not (yet) in the bundle"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlink_then_write_through_it_is_refused() {
        let a = tgz(|b| {
            link(b, "sub", "..", tar::EntryType::Symlink);
        });
        let d = dest();
        // ".." from the root leaves the tree.
        assert!(extract(&a, &d, Limits::default()).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bombs_and_floods_are_refused() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = tgz(|b| file(b, "zeros", &zeros, 0o644));
        let d = dest();
        let err = extract(
            &bomb,
            &d,
            Limits {
                max_ratio: 50,
                ..Limits::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("compression bomb") || err.contains("beyond"),
            "{err}"
        );
        std::fs::remove_dir_all(&d).unwrap();
        let many = tgz(|b| (0..50).for_each(|i| file(b, &format!("f{i}"), b"", 0o644)));
        let d = dest();
        let err = extract(
            &many,
            &d,
            Limits {
                max_files: 10,
                ..Limits::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("more than 10 entries"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn digests() {
        assert!(verify(&digest_of(b"abc"), b"abc").is_ok());
        assert!(verify(&digest_of(b"abc"), b"abd")
            .unwrap_err()
            .to_string()
            .contains("mismatch"));
    }
}
