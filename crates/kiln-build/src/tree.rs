//! Read-only filesystem trees that COPY reads from and resolves destinations in: the build
//! context (a real directory, minus what .dockerignore excludes) and a stage's rootfs seen
//! through its unpacked layers (overlay semantics, without mounting anything).
//!
//! Paths are relative (`a/b`, `""` for the root). Symlinks are resolved by [`resolve`]
//! component by component inside the tree, so no lookup can leave the root.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// Directory.
    Dir,
    /// Regular file.
    File,
    /// Symlink with its target as written.
    Symlink(String),
    /// Character device.
    CharDevice(u32, u32),
    /// Block device.
    BlockDevice(u32, u32),
    /// Named pipe.
    Fifo,
    /// Socket (never copied).
    Socket,
}

/// A file's metadata and where its bytes are.
#[derive(Debug, Clone)]
pub struct Node {
    /// Type.
    pub kind: NodeKind,
    /// Permission bits (incl. setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size of a regular file.
    pub size: u64,
    /// Modification time (seconds).
    pub mtime: i64,
    /// Modification time nanoseconds, for the stat cache.
    pub mtime_nsec: i64,
    /// Change time, for the stat cache.
    pub ctime: (i64, i64),
    /// Real path on the host, to read content from.
    pub real: PathBuf,
    /// (device, inode), for hard link detection.
    pub dev_ino: (u64, u64),
    /// Link count.
    pub nlink: u64,
}

impl Node {
    fn from_meta(meta: &fs::Metadata, real: PathBuf) -> io::Result<Node> {
        let ft = meta.file_type();
        let rdev = meta.rdev();
        let (maj, min) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            NodeKind::File
        } else if ft.is_symlink() {
            NodeKind::Symlink(fs::read_link(&real)?.to_string_lossy().into_owned())
        } else if ft.is_char_device() {
            NodeKind::CharDevice(maj, min)
        } else if ft.is_block_device() {
            NodeKind::BlockDevice(maj, min)
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else {
            NodeKind::Socket
        };
        Ok(Node {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: if ft.is_file() { meta.len() } else { 0 },
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            real,
            dev_ino: (meta.dev(), meta.ino()),
            nlink: meta.nlink(),
        })
    }

    /// The node of `name` in the directory `dir` from its `statx` (as [`Node::from_meta`]
    /// from `lstat`: the same device numbers, times and kinds).
    fn from_statx(st: &rustix::fs::Statx, dir: &impl AsFd, name: &str, real: PathBuf) -> io::Result<Node> {
        use rustix::fs::FileType;
        let ft = FileType::from_raw_mode(u32::from(st.stx_mode));
        let (maj, min) = (st.stx_rdev_major, st.stx_rdev_minor);
        let kind = match ft {
            FileType::Directory => NodeKind::Dir,
            FileType::RegularFile => NodeKind::File,
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
                NodeKind::Symlink(target.to_string_lossy().into_owned())
            }
            FileType::CharacterDevice => NodeKind::CharDevice(maj, min),
            FileType::BlockDevice => NodeKind::BlockDevice(maj, min),
            FileType::Fifo => NodeKind::Fifo,
            _ => NodeKind::Socket,
        };
        let is_file = ft == FileType::RegularFile;
        Ok(Node {
            kind,
            mode: u32::from(st.stx_mode) & 0o7777,
            uid: st.stx_uid,
            gid: st.stx_gid,
            size: if is_file { st.stx_size } else { 0 },
            mtime: st.stx_mtime.tv_sec,
            mtime_nsec: i64::from(st.stx_mtime.tv_nsec),
            ctime: (st.stx_ctime.tv_sec, i64::from(st.stx_ctime.tv_nsec)),
            real,
            dev_ino: (rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino),
            nlink: u64::from(st.stx_nlink),
        })
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.kind == NodeKind::Dir
    }
}

/// A tree COPY can read.
pub trait Tree: Sync {
    /// Metadata of `rel` without following a final symlink. `rel` must contain no symlink
    /// components (use [`resolve`] first). `None` if absent.
    fn lstat(&self, rel: &str) -> io::Result<Option<Node>>;
    /// Visible child names of directory `rel`, sorted.
    fn list(&self, rel: &str) -> io::Result<Vec<String>>;
    /// [`Tree::lstat`] of each of `names` in directory `dir` (which must contain no symlink
    /// components), in order. A tree may answer a large directory faster than name by name.
    fn lstat_children(&self, dir: &str, names: &[String]) -> io::Result<Vec<Option<Node>>> {
        names.iter().map(|n| self.lstat(&join(dir, n))).collect()
    }
}

/// Joins relative paths.
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Cleans a path into relative form: leading `/` and `.` dropped, `..` never above the root.
pub fn clean_rel(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// Resolves symlinks in `rel` inside the tree (absolute targets start at the tree's root,
/// `..` stops at the root), following the final component too when `follow_final`.
/// Components that do not exist are kept as written. Fails after 40 links (a loop).
pub fn resolve(tree: &dyn Tree, rel: &str, follow_final: bool) -> io::Result<String> {
    let mut pending: Vec<String> = clean_rel(rel)
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            done.pop();
            continue;
        }
        if comp == "." {
            continue;
        }
        let candidate = join(&done.join("/"), &comp);
        let is_last = pending.is_empty();
        match tree.lstat(&candidate)? {
            Some(Node {
                kind: NodeKind::Symlink(target),
                ..
            }) if !is_last || follow_final => {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {rel:?}"
                    )));
                }
                if target.starts_with('/') {
                    done.clear();
                }
                for part in target.split('/').filter(|s| !s.is_empty()).rev() {
                    pending.push(part.to_string());
                }
            }
            _ => done.push(comp),
        }
    }
    Ok(done.join("/"))
}

/// Opens directory `dir` of the tree at `root` for `*at` calls, refusing a symlink in any of
/// its components: `dir` was resolved before, and a directory swapped for a symlink since must
/// not point the stats (and so the image) outside the context. `openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`; where that call is missing or filtered, a path
/// open that refuses at least a final symlink.
fn open_dir_beneath(root: &std::path::Path, dir: &str) -> io::Result<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use rustix::io::Errno;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let root_fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    if dir.is_empty() {
        return Ok(root_fd);
    }
    // O_DIRECTORY | O_NOFOLLOW on a final symlink fails with ENOTDIR, not ELOOP.
    let refused = |e: Errno| -> io::Error {
        let is_link = fs::symlink_metadata(root.join(dir)).is_ok_and(|m| m.is_symlink());
        if e == Errno::LOOP || e == Errno::XDEV || (e == Errno::NOTDIR && is_link) {
            io::Error::other(format!(
                "{dir:?} in the context is reached through a symlink (it changed during the build)"
            ))
        } else {
            e.into()
        }
    };
    match rustix::fs::openat2(
        &root_fd,
        dir,
        flags,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    ) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOSYS | Errno::PERM) => rustix::fs::open(root.join(dir), flags, Mode::empty()).map_err(refused),
        Err(e) => Err(refused(e)),
    }
}

/// The build context: a directory, with .dockerignore applied.
pub struct ContextTree {
    root: PathBuf,
    ignore: Option<kiln_dockerfile::dockerignore::Matcher>,
}

impl ContextTree {
    /// A context rooted at `root` with an optional ignore matcher.
    pub fn new(root: PathBuf, ignore: Option<kiln_dockerfile::dockerignore::Matcher>) -> ContextTree {
        ContextTree { root, ignore }
    }

    /// The context directory.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    fn excluded(&self, rel: &str, is_dir: bool) -> bool {
        match &self.ignore {
            Some(m) if !rel.is_empty() => m.is_excluded(rel) && !(is_dir && m.dir_may_have_exceptions(rel)),
            _ => false,
        }
    }
}

impl Tree for ContextTree {
    fn lstat(&self, rel: &str) -> io::Result<Option<Node>> {
        let real = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        match fs::symlink_metadata(&real) {
            Ok(m) => {
                if self.excluded(rel, m.is_dir()) {
                    return Ok(None);
                }
                Node::from_meta(&m, real).map(Some)
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// One `statx` per name relative to the directory's descriptor (no walk of the whole
    /// path per file, never following the name's own symlink), on up to 8 threads when
    /// the directory is large: a no-change rebuild of a big context is mostly these stats.
    fn lstat_children(&self, dir: &str, names: &[String]) -> io::Result<Vec<Option<Node>>> {
        const CHUNK: usize = 512;
        let dir_real = if dir.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir)
        };
        let fd = open_dir_beneath(&self.root, dir)?;
        let one = |name: &String| -> io::Result<Option<Node>> {
            let st = match rustix::fs::statx(
                &fd,
                name.as_str(),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                rustix::fs::StatxFlags::BASIC_STATS,
            ) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let ft = rustix::fs::FileType::from_raw_mode(u32::from(st.stx_mode));
            if self.excluded(&join(dir, name), ft == rustix::fs::FileType::Directory) {
                return Ok(None);
            }
            Node::from_statx(&st, &fd, name, dir_real.join(name)).map(Some)
        };
        if names.len() <= CHUNK {
            return names.iter().map(one).collect();
        }
        let chunks: Vec<&[String]> = names.chunks(CHUNK).collect();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
        let parts = kiln_oci::parallel::try_map_ordered(&chunks, workers, |_, c| {
            c.iter().map(one).collect::<io::Result<Vec<_>>>()
        })?;
        Ok(parts.into_iter().flatten().collect())
    }

    fn list(&self, rel: &str) -> io::Result<Vec<String>> {
        let dir = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        let mut names = Vec::new();
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let child = join(rel, &name);
            let is_dir = e.file_type()?.is_dir();
            if !self.excluded(&child, is_dir) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// A rootfs seen through its layers, each unpacked in its own directory with overlayfs-style
/// whiteouts (0/0 character devices, `*.overlay.opaque` xattrs), bottom layer first.
pub struct LayeredTree {
    layers: Vec<PathBuf>,
}

impl LayeredTree {
    /// A view over unpacked layer directories, bottom first.
    pub fn new(layers: Vec<PathBuf>) -> LayeredTree {
        LayeredTree { layers }
    }

    /// The layer directories.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(path: &std::path::Path) -> bool {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        let mut buf = [0u8; 4];
        if let Ok(n) = rustix::fs::lgetxattr(path, name, &mut buf)
            && &buf[..n] == b"y"
        {
            return true;
        }
    }
    false
}

impl Tree for LayeredTree {
    fn lstat(&self, rel: &str) -> io::Result<Option<Node>> {
        let comps: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        if comps.is_empty() {
            let real = self
                .layers
                .last()
                .cloned()
                .unwrap_or_else(|| PathBuf::from("/nonexistent-kiln-root"));
            return Ok(Some(Node {
                kind: NodeKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: 0,
                mtime_nsec: 0,
                ctime: (0, 0),
                real,
                dev_ino: (0, 0),
                nlink: 1,
            }));
        }
        'layers: for layer in self.layers.iter().rev() {
            let mut path = layer.clone();
            let mut cut_below = false;
            for (i, c) in comps.iter().enumerate() {
                path.push(c);
                match fs::symlink_metadata(&path) {
                    Ok(m) if is_whiteout(&m) => return Ok(None),
                    Ok(m) if i + 1 == comps.len() => return Node::from_meta(&m, path).map(Some),
                    Ok(m) if m.is_dir() => {
                        if is_opaque(&path) {
                            cut_below = true;
                        }
                    }
                    // A non-directory here hides everything below it in lower layers.
                    Ok(_) => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if cut_below {
                            return Ok(None);
                        }
                        continue 'layers;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(None)
    }

    fn list(&self, rel: &str) -> io::Result<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut hidden = BTreeSet::new();
        for layer in self.layers.iter().rev() {
            let dir = if rel.is_empty() { layer.clone() } else { layer.join(rel) };
            let meta = match fs::symlink_metadata(&dir) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !meta.is_dir() {
                break;
            }
            for e in fs::read_dir(&dir)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if hidden.contains(&name) || seen.contains(&name) {
                    continue;
                }
                let m = e.metadata()?;
                if is_whiteout(&m) {
                    hidden.insert(name);
                } else {
                    if !m.is_dir() {
                        hidden.insert(name.clone());
                    }
                    seen.insert(name);
                }
            }
            if is_opaque(&dir) {
                break;
            }
        }
        Ok(seen.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/../../etc", r.join("esc")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let t = ContextTree::new(r.to_path_buf(), None);
        assert_eq!(resolve(&t, "bin/x", true).unwrap(), "usr/bin/x");
        assert_eq!(resolve(&t, "/esc/passwd", true).unwrap(), "etc/passwd");
        assert_eq!(resolve(&t, "esc", false).unwrap(), "esc");
        assert!(resolve(&t, "loop", true).is_err());
    }

    #[test]
    fn lstat_children_is_lstat_of_each_name() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        // More names than one chunk, so the threaded path answers too.
        fs::create_dir_all(r.join("big/sub")).unwrap();
        for i in 0..1100 {
            fs::write(r.join(format!("big/f{i:04}")), format!("{i}")).unwrap();
        }
        fs::write(r.join("big/hidden.log"), "x").unwrap();
        symlink("/etc/passwd", r.join("big/link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("big/fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        let ignore = kiln_dockerfile::dockerignore::Matcher::parse("big/*.log").unwrap();
        let t = ContextTree::new(r.to_path_buf(), Some(ignore));
        let mut names = t.list("big").unwrap();
        assert!(!names.contains(&"hidden.log".to_string()));
        names.push("hidden.log".into());
        names.push("gone".into());
        let many = t.lstat_children("big", &names).unwrap();
        assert_eq!(many.len(), names.len());
        for (name, node) in names.iter().zip(&many) {
            let one = t.lstat(&join("big", name)).unwrap();
            assert_eq!(format!("{node:?}"), format!("{one:?}"), "{name}");
        }
        let kinds = |n: &str| {
            many[names.iter().position(|x| x == n).unwrap()]
                .as_ref()
                .map(|n| n.kind.clone())
        };
        assert_eq!(kinds("link"), Some(NodeKind::Symlink("/etc/passwd".into())));
        assert_eq!(kinds("fifo"), Some(NodeKind::Fifo));
        assert_eq!(kinds("sub"), Some(NodeKind::Dir));
        assert_eq!(kinds("hidden.log"), None);
        assert_eq!(kinds("gone"), None);
    }

    /// A directory of the context that became a symlink (to a directory outside, at its end or
    /// in the middle of the path) is refused, not followed.
    #[test]
    fn lstat_children_refuses_a_directory_turned_symlink() {
        let d = tempfile::tempdir().unwrap();
        let (ctx, outside) = (d.path().join("ctx"), d.path().join("outside"));
        fs::create_dir_all(ctx.join("real/sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "x").unwrap();
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("sub/secret"), "x").unwrap();
        symlink(&outside, ctx.join("big")).unwrap();
        symlink("real", ctx.join("mid")).unwrap();
        let t = ContextTree::new(ctx.clone(), None);
        let names = vec!["secret".to_string()];
        for dir in ["big", "big/sub", "mid/sub"] {
            let e = t.lstat_children(dir, &names).unwrap_err();
            assert!(e.to_string().contains("symlink"), "{dir}: {e}");
        }
        // The real directory still answers.
        assert_eq!(t.lstat_children("real/sub", &names).unwrap().len(), 1);
    }

    #[test]
    fn layered_whiteouts_and_opaque() {
        let d = tempfile::tempdir().unwrap();
        let (l1, l2) = (d.path().join("l1"), d.path().join("l2"));
        fs::create_dir_all(l1.join("a/sub")).unwrap();
        fs::write(l1.join("a/x"), "1").unwrap();
        fs::write(l1.join("a/y"), "1").unwrap();
        fs::write(l1.join("a/sub/z"), "1").unwrap();
        fs::create_dir_all(l2.join("a")).unwrap();
        fs::write(l2.join("a/new"), "2").unwrap();
        let t = LayeredTree::new(vec![l1.clone(), l2.clone()]);
        assert_eq!(t.list("a").unwrap(), ["new", "sub", "x", "y"]);
        if rustix::fs::mknodat(
            rustix::fs::CWD,
            l2.join("a/x"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .is_ok()
        {
            assert!(t.lstat("a/x").unwrap().is_none());
            assert_eq!(t.list("a").unwrap(), ["new", "sub", "y"]);
            if rustix::fs::lsetxattr(
                l2.join("a"),
                "trusted.overlay.opaque",
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .is_ok()
            {
                assert_eq!(t.list("a").unwrap(), ["new"]);
                assert!(t.lstat("a/sub/z").unwrap().is_none());
            }
        }
        assert!(t.lstat("a/new").unwrap().is_some());
    }
}
