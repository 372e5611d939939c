//! `kiln run --discover-writes`: what a program wrote to its rootfs, read from the overlay's
//! upper dir after it exits (never by walking the rootfs), and where a tmpfs or volume would
//! let it run read-only. `kiln harden --writes FILE` reads the same list back.

use std::collections::BTreeSet;
use std::path::Path;

use kiln_build::run::overlay;
use kiln_build::tree::Tree;
use kiln_oci::layer::EntryKind;
use serde::Serialize;

use crate::error::{RuntimeError, io};

/// What a run wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Writes {
    /// Every path written, created or deleted, absolute, sorted.
    pub written: Vec<String>,
    /// Directories to mount a tmpfs or volume at, so the same run needs no writable rootfs.
    pub mounts: Vec<String>,
}

/// Reads the upper dir. `mount_points` (the runtime's own mounts: /proc, /dev, /tmp, VOLUMEs…)
/// are not writes; `image` tells new empty directories from copied-up ones.
pub fn discover(upper: &Path, mount_points: &[String], image: &dyn Tree) -> Result<Writes, RuntimeError> {
    let mounts: Vec<String> = mount_points
        .iter()
        .map(|m| m.trim_start_matches('/').to_string())
        .collect();
    let under_mount = |p: &str| {
        mounts
            .iter()
            .any(|m| p == m || p.starts_with(&format!("{m}/")) || m.starts_with(&format!("{p}/")))
    };
    let entries = overlay::upper_entries(upper, &|p, _| under_mount(p) && !is_ancestor_only(p, &mounts))
        .map_err(io("reading what the container wrote"))?;
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let has_children = |p: &str| paths.iter().any(|q| q.starts_with(&format!("{p}/")));
    let mut written = Vec::new();
    let mut dirs = BTreeSet::new();
    for e in &entries {
        if under_mount(&e.path) {
            continue;
        }
        let (path, removed) = match e.path.rsplit_once('/') {
            Some((dir, name)) if name.starts_with(".wh.") => (format!("{dir}/{}", &name[4..]), true),
            None if e.path.starts_with(".wh.") => (e.path[4..].to_string(), true),
            _ => (e.path.clone(), false),
        };
        if path.ends_with(".wh..opq") {
            continue;
        }
        let is_dir = matches!(e.kind, EntryKind::Dir) && !removed;
        if is_dir {
            // A copied-up directory holds writes below it; only a new empty one is a write.
            let in_image = image.lstat(&path).ok().flatten().is_some();
            if has_children(&path) || in_image {
                continue;
            }
            dirs.insert(path.clone());
        } else {
            let parent = path.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
            dirs.insert(parent);
        }
        written.push(format!("/{path}"));
    }
    written.sort();
    Ok(Writes {
        written,
        mounts: collapse(dirs),
    })
}

fn is_ancestor_only(p: &str, mounts: &[String]) -> bool {
    mounts.iter().any(|m| m.starts_with(&format!("{p}/")))
}

/// Sorted absolute directories, without any that sit inside another.
fn collapse(dirs: BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in dirs {
        let abs = format!("/{d}");
        if abs == "/" {
            out.push(abs);
            continue;
        }
        if out.iter().any(|o| o == "/" || abs.starts_with(&format!("{o}/"))) {
            continue;
        }
        out.push(abs);
    }
    out
}

/// The writes file `kiln harden --writes` reads: each written path as a comment, then one
/// directory per line.
pub fn to_file(w: &Writes) -> String {
    let mut s = String::from("# kiln run --discover-writes: paths the program wrote\n");
    for p in &w.written {
        s.push_str(&format!("#   {p}\n"));
    }
    s.push_str("# mount a tmpfs or volume at each directory below (kiln harden --writes FILE)\n");
    for m in &w.mounts {
        s.push_str(m);
        s.push('\n');
    }
    s
}

/// Reads a writes file: one absolute directory per line; `#` starts a comment.
pub fn parse_file(path: &Path) -> Result<Vec<String>, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RuntimeError::input(
            format!("--writes {}: {e}", path.display()),
            "give the file `kiln run --discover-writes=FILE` wrote",
        )
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        if !l.starts_with('/') || l.split('/').any(|c| c == "..") {
            return Err(RuntimeError::input(
                format!("{}:{}:1: {l:?} is not an absolute path", path.display(), n + 1),
                "one absolute directory per line, e.g. /var/log",
            ));
        }
        out.push(l.trim_end_matches('/').to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_dirs_collapse() {
        let d: BTreeSet<String> = ["home/app/.cache", "home/app/.cache/sub", "var/log"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(collapse(d), vec!["/home/app/.cache", "/var/log"]);
    }
}
