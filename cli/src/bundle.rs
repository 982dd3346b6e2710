//! Packs a module directory into a deterministic tar.gz (sorted entries, zero times and owners),
//! so the same module always has the same digest and is stored once.

use std::path::Path;

const SKIP_DIRS: &[&str] = &[".terraform", ".git", ".tofuflow"];

fn skip_file(name: &str) -> bool {
    name.starts_with("terraform.tfstate")
        || name == "errored.tfstate"
        || name == ".terraform.tfstate.lock.info"
        || name.ends_with(".tfplan")
}

pub fn pack(dir: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("cannot read module directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "{} is not a directory: pass the module directory",
            dir.display()
        ));
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut any_tf = false;
    add_dir(&mut tar, dir, Path::new(""), &mut any_tf)?;
    if !any_tf {
        return Err(format!(
            "{} has no .tf or .tofu files: is it an OpenTofu module?",
            dir.display()
        ));
    }
    let gz = tar.into_inner().map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

fn add_dir(
    tar: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
    root: &Path,
    rel: &Path,
    any_tf: &mut bool,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = rel.join(&name);
        let ft = e.file_type().map_err(|e| e.to_string())?;
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        if ft.is_dir() {
            if SKIP_DIRS.contains(&name.as_str()) {
                continue;
            }
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, &path, std::io::empty())
                .map_err(|e| e.to_string())?;
            add_dir(tar, root, &path, any_tf)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(e.path()).map_err(|e| e.to_string())?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            tar.append_link(&mut h, &path, &target)
                .map_err(|e| e.to_string())?;
        } else if ft.is_file() {
            if skip_file(&name) {
                continue;
            }
            if rel.as_os_str().is_empty() && (name.ends_with(".tf") || name.ends_with(".tofu")) {
                *any_tf = true;
            }
            let data = std::fs::read(e.path())
                .map_err(|err| format!("cannot read {}: {err}", e.path().display()))?;
            let exec = e
                .metadata()
                .map(|m| m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if exec { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, &path, data.as_slice())
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_is_deterministic_and_skips_local_state() {
        let d = std::env::temp_dir().join(format!("tofuflow-pack-{}", std::process::id()));
        std::fs::create_dir_all(d.join(".terraform")).unwrap();
        std::fs::write(d.join("main.tf"), "output \"x\" { value = 1 }\n").unwrap();
        std::fs::write(d.join("terraform.tfstate"), "{}").unwrap();
        std::fs::write(d.join(".terraform/junk"), "x").unwrap();
        let a = pack(&d).unwrap();
        let b = pack(&d).unwrap();
        assert_eq!(a, b, "same module, same bytes");
        let mut t = tar::Archive::new(flate2::read::GzDecoder::new(a.as_slice()));
        let names: Vec<String> = t
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["main.tf"]);
        std::fs::remove_dir_all(&d).unwrap();
        assert!(pack(Path::new("/nonexistent"))
            .unwrap_err()
            .contains("cannot read module directory"));
    }
}
