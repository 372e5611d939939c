//! The RUN rootfs: an overlay of the parent layers with a fresh upper directory, and the
//! step's layer read back from that upper directory alone (the rootfs is never walked).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kiln_oci::layer::{EntryKind, FileSource, LayerEntry};

/// An overlay mount, unmounted when dropped.
pub struct OverlayMount {
    target: PathBuf,
}

impl OverlayMount {
    /// Mounts `lowers` (bottom first) under `upper` at `target`. With no lower layers an
    /// empty directory stands in, since overlayfs needs at least one.
    pub fn mount(
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
        empty: &Path,
    ) -> io::Result<OverlayMount> {
        Self::mount_with(lowers, [upper, work, target, empty], false)
    }

    /// [`OverlayMount::mount`] for an upper directory that is thrown away after use (a RUN
    /// step's, whose changes are read back into a layer blob that is written and fsynced on
    /// its own): with overlay's `volatile` option, so unmounting does not sync the whole
    /// filesystem under the upper directory (kiln's and every other writer's dirty data,
    /// tens to hundreds of milliseconds per step on a busy disk). Kernels without the option
    /// (before 5.10) get the plain mount.
    pub fn mount_scratch(
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
        empty: &Path,
    ) -> io::Result<OverlayMount> {
        Self::mount_with(lowers, [upper, work, target, empty], true)
            .or_else(|_| Self::mount_with(lowers, [upper, work, target, empty], false))
    }

    fn mount_with(
        lowers: &[PathBuf],
        [upper, work, target, empty]: [&Path; 4],
        volatile: bool,
    ) -> io::Result<OverlayMount> {
        let mut lower: Vec<String> = lowers.iter().rev().map(|p| p.display().to_string()).collect();
        if lower.is_empty() {
            fs::create_dir_all(empty)?;
            lower.push(empty.display().to_string());
        }
        for p in &lower {
            if p.contains([':', ',']) {
                return Err(io::Error::other(format!("overlay lower dir {p:?} contains ':' or ','")));
            }
        }
        let mut data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        // In a user namespace overlay keeps its whiteout and opaque marks in user.* xattrs,
        // which is also where unpacking put them there.
        if super::userns::in_user_namespace() {
            data.push_str(",userxattr");
        }
        if volatile {
            data.push_str(",volatile");
        }
        if data.len() >= 4000 {
            return Err(io::Error::other(format!(
                "{} layers are too many for one overlay mount (hint: squash the base image's layers)",
                lowers.len()
            )));
        }
        let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
        rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| io::Error::other(format!("mounting overlay at {}: {e}", target.display())))?;
        Ok(OverlayMount {
            target: target.to_path_buf(),
        })
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::DETACH);
    }
}

fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(_) => return vec![],
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        // Overlay's own bookkeeping never goes into a layer.
        if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
            continue;
        }
        let mut val = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, name.as_str(), &mut val) {
            val.truncate(len);
            out.push((name, val));
        }
    }
    out.sort();
    out
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| matches!(rustix::fs::lgetxattr(path, *n, &mut buf), Ok(1) if buf[0] == b'y'))
}

/// Reads the upper directory into layer entries: overlay whiteouts (0/0 character devices)
/// become `.wh.NAME`, opaque directories get `.wh..wh..opq`, hard links within the layer are
/// kept. `skip` drops paths (and everything below them): volatile files, mount stubs.
pub fn upper_entries(upper: &Path, skip: &dyn Fn(&str, &fs::Metadata) -> bool) -> io::Result<Vec<LayerEntry>> {
    let mut out = Vec::new();
    walk(upper, "", skip, &mut out)?;
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    // Hard links: the first path in tar order carries the content.
    let mut first: HashMap<(u64, u64), String> = HashMap::new();
    let mut entries = Vec::with_capacity(out.len());
    for (mut e, link) in out {
        if let Some(key) = link {
            match first.get(&key) {
                Some(target) => e.kind = EntryKind::Hardlink(target.clone()),
                None => {
                    first.insert(key, e.path.clone());
                }
            }
        }
        entries.push(e);
    }
    Ok(entries)
}

type Walked = (LayerEntry, Option<(u64, u64)>);

fn walk(root: &Path, rel: &str, skip: &dyn Fn(&str, &fs::Metadata) -> bool, out: &mut Vec<Walked>) -> io::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<_> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let real = root.join(&path);
        let meta = fs::symlink_metadata(&real)?;
        if skip(&path, &meta) {
            continue;
        }
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            let mut wh = LayerEntry::whiteout(&path);
            wh.mtime = 0;
            out.push((wh, None));
            continue;
        }
        let base = |kind| LayerEntry {
            path: path.clone(),
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid() as u64,
            gid: meta.gid() as u64,
            mtime: meta.mtime(),
            xattrs: xattrs(&real),
        };
        if ft.is_dir() {
            out.push((base(EntryKind::Dir), None));
            if is_opaque(&real) {
                out.push((LayerEntry::file_bytes(format!("{path}/.wh..wh..opq"), vec![], 0), None));
            }
            walk(root, &path, skip, out)?;
        } else if ft.is_file() {
            let link = (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
            out.push((
                base(EntryKind::File {
                    source: FileSource::Path(real.clone()),
                    size: meta.len(),
                }),
                link,
            ));
        } else if ft.is_symlink() {
            let target = fs::read_link(&real)?.to_string_lossy().into_owned();
            out.push((base(EntryKind::Symlink(target)), None));
        } else if ft.is_char_device() {
            let r = meta.rdev();
            out.push((
                base(EntryKind::CharDevice(rustix::fs::major(r), rustix::fs::minor(r))),
                None,
            ));
        } else if ft.is_block_device() {
            let r = meta.rdev();
            out.push((
                base(EntryKind::BlockDevice(rustix::fs::major(r), rustix::fs::minor(r))),
                None,
            ));
        } else if ft.is_fifo() {
            out.push((base(EntryKind::Fifo), None));
        }
        // Sockets are never part of an image.
    }
    Ok(())
}

/// Files package managers rewrite differently on every run; dropped from RUN layers unless
/// `--keep-volatile` (documented in docs/build.md). Patterns are `*` globs on the path.
pub const VOLATILE: &[&str] = &[
    "var/log/dpkg.log",
    "var/log/apt/*",
    "var/log/alternatives.log",
    "var/log/bootstrap.log",
    "var/log/lastlog",
    "var/log/faillog",
    "var/cache/ldconfig/aux-cache",
    "var/cache/apt/*.bin",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "etc/*-",
    "etc/.pwd.lock",
    "var/lib/apt/lists/lock",
    "var/lib/apt/lists/partial",
    "var/cache/apt/archives/lock",
    "var/cache/apt/archives/partial",
    "var/lib/dpkg/lock",
    "var/lib/dpkg/lock-frontend",
    "var/lib/dpkg/triggers/Lock",
];

/// True when `path` matches a volatile pattern (`*` matches within one component).
pub fn is_volatile(path: &str) -> bool {
    VOLATILE.iter().any(|pat| {
        let pc: Vec<&str> = pat.split('/').collect();
        let xc: Vec<&str> = path.split('/').collect();
        pc.len() == xc.len() && pc.iter().zip(&xc).all(|(p, x)| crate::copy::match_component(p, x))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_patterns() {
        assert!(is_volatile("var/log/apt/history.log"));
        assert!(is_volatile("var/cache/apt/pkgcache.bin"));
        assert!(is_volatile("etc/passwd-"));
        assert!(!is_volatile("etc/passwd"));
        assert!(!is_volatile("var/log/apt"));
        assert!(!is_volatile("usr/bin/apt"));
    }
}
