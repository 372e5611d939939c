//! Safe extraction of OCI layer tars onto a directory.
//!
//! A layer is untrusted input: it comes from a registry, and the image author
//! (or whoever can push to that repository) chooses every byte of it. Applying
//! the layers of an image in order onto one directory builds its rootfs, so a
//! layer is also unpacked on top of whatever earlier layers left behind,
//! including symlinks they planted.
//!
//! # How paths are contained
//!
//! Every filesystem operation is made relative to a directory fd, never to a
//! path string under `root`:
//!
//! * An entry's name is cleaned lexically first: empty and `.` components are
//!   dropped, a leading `/` is ignored, and `..` pops a component but never
//!   climbs above the root (the same as `filepath.Join("/", name)` in
//!   containerd). `../../etc/passwd` therefore becomes `etc/passwd` inside
//!   the root; it is contained, not an error.
//! * The *parent* directory is opened with `openat2(RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS)`, so symlinks in the middle of a path (whether from
//!   this layer or from a lower one) are followed as if `root` were `/`:
//!   `evil -> /` then `evil/etc/passwd` writes `root/etc/passwd`. This is the
//!   view the container itself will have, and what containerd's applier does.
//!   Where `openat2` is missing (Linux < 5.6, or a seccomp filter that hides
//!   it) a component-by-component walk with `O_NOFOLLOW` emulates the same
//!   semantics.
//! * The *last* component is never followed: it is removed, created or
//!   inspected with `*at` calls and `AT_SYMLINK_NOFOLLOW`/`O_NOFOLLOW`. A
//!   symlink in the way is replaced, not written through.
//! * Hardlink targets are cleaned the same way, except that a `..` that would
//!   climb above the root is an error, and the target must already exist in
//!   the root. A hardlink cannot point at a file outside the root, because a
//!   target is resolved exactly like an entry path.
//!
//! # Whiteouts
//!
//! In [`WhiteoutMode::Apply`] the OCI whiteouts delete from the lower layers:
//! `.wh.NAME` removes `NAME` recursively, `.wh..wh..opq` empties its directory
//! of everything that did not come from this layer. "From this layer" is
//! tracked by directory inode and name, so entries written before the opaque
//! marker survive, in whatever order the tar lists them. As the spec says, a
//! whiteout never deletes something the same layer wrote.
//!
//! # Completeness
//!
//! A truncated or corrupt stream is an error, never a short success: file data
//! that ends early, a tar without its end-of-archive marker, and a compressed
//! stream that does not end cleanly (checked by reading it to the end after
//! the marker) all fail the unpack.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

/// The whiteout prefix of the OCI layer format (inherited from AUFS).
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name that marks its directory as opaque.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Other AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`); never extracted.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
/// The kernel's limit on symlinks followed in one lookup; the fallback walk
/// uses the same so both resolvers fail on the same trees.
const MAX_SYMLINKS: u32 = 40;
/// Size of the copy buffer for file data.
const COPY_BUFFER: usize = 128 * 1024;

/// What to do with OCI whiteout entries (`.wh.NAME` and `.wh..wh..opq`).
///
/// The choice depends on what the target directory is: a merged rootfs
/// needs the deletions done, while an overlayfs layer directory must keep
/// them in the form overlayfs understands so the kernel applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Delete the whited-out paths from what lower layers left in the
    /// directory (OCI image spec semantics).
    #[default]
    Apply,
    /// Record whiteouts as overlayfs does in an upper directory: a 0/0
    /// character device for `.wh.NAME`, and the `trusted.overlay.opaque`
    /// xattr (or `user.overlay.opaque` when unprivileged) for opaque
    /// directories. For per-layer overlay snapshot directories. Failing to
    /// record a whiteout is an error, because a lost whiteout silently brings
    /// deleted files back.
    Keep,
}

/// How much of the layer's metadata to reproduce.
///
/// The defaults depend on privilege: ownership and device nodes can only be
/// reproduced as root, and a rootless build should not fail because it
/// cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Give entries the uid/gid from the tar (`lchown` for symlinks). Needs
    /// root (or a user namespace mapping those ids); a failed chown is an
    /// error when this is set. Defaults to whether we run as root.
    pub same_owner: bool,
    /// Create character and block device nodes. When unset they are skipped
    /// and counted in [`UnpackStats::devices_skipped`]. FIFOs are always
    /// created. Defaults to whether we run as root.
    pub allow_devices: bool,
    /// How whiteout entries are handled.
    pub whiteouts: WhiteoutMode,
    /// The most bytes of tar stream (headers and data, after decompression) one layer may
    /// expand to; more is refused as a decompression bomb. Defaults to
    /// [`max_layer_bytes`].
    pub max_bytes: u64,
}

/// The default limit on how far one layer may expand: `KILN_MAX_LAYER_SIZE` (bytes, or
/// with a `K`/`M`/`G`/`T` suffix, binary units), else 64 GiB, generous for real images
/// (the largest public layers are a few GiB) and still a stop for a gzip bomb that would
/// fill the disk.
pub fn max_layer_bytes() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("KILN_MAX_LAYER_SIZE")
            .ok()
            .and_then(|v| parse_size(&v))
            .unwrap_or(DEFAULT_MAX_LAYER_BYTES)
    })
}

/// 64 GiB.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;

/// Parses `1048576`, `512M`, `64GiB`, `2T` (binary units; case-insensitive).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let unit = s[digits..].trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

impl Default for UnpackOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            same_owner: root,
            allow_devices: root,
            whiteouts: WhiteoutMode::Apply,
            max_bytes: max_layer_bytes(),
        }
    }
}

/// Counts of what one unpack did, for progress output and for noticing
/// layers that lost something on this host (skipped devices or xattrs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackStats {
    /// Tar entries read, including whiteouts and skipped ones.
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directory entries applied.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// FIFOs created.
    pub fifos: u64,
    /// Character and block devices created.
    pub devices: u64,
    /// Whiteouts and opaque markers applied (or kept).
    pub whiteouts: u64,
    /// Device nodes not created because [`UnpackOptions::allow_devices`] was
    /// unset.
    pub devices_skipped: u64,
    /// Extended attributes that could not be set (unsupported by the
    /// filesystem, not permitted without privilege) or were refused because
    /// they would forge overlayfs metadata.
    pub xattrs_skipped: u64,
    /// Entries ignored: the root itself, AUFS metadata, and entry types that
    /// have no meaning in a rootfs (volume labels, global PAX headers).
    pub skipped: u64,
    /// Bytes of regular file data written.
    pub bytes: u64,
}

/// Why a layer could not be unpacked.
///
/// Messages start with the entry (or stream position) they are about, so the
/// caller can prefix the image and layer digest and get a complete sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The target directory could not be opened.
    #[error("cannot open the unpack root {}", path.display())]
    Root {
        /// The directory that was passed to [`unpack_layer`].
        path: PathBuf,
        /// The error from `open`.
        #[source]
        source: io::Error,
    },
    /// One entry could not be applied, or was rejected as hostile.
    #[error("layer entry {path:?}: {reason}{}", cause(.source))]
    Entry {
        /// The entry's name as written in the tar (lossily decoded).
        path: String,
        /// What went wrong, in words.
        reason: String,
        /// The underlying OS or I/O error, if any.
        #[source]
        source: Option<io::Error>,
    },
    /// The layer expands beyond [`UnpackOptions::max_bytes`].
    #[error(
        "the layer expands to more than {} bytes {} (hint: this looks like a decompression bomb; if the layer is real, raise KILN_MAX_LAYER_SIZE)",
        limit,
        position(.after)
    )]
    TooLarge {
        /// The limit that was passed.
        limit: u64,
        /// The last entry read before the limit was hit.
        after: Option<String>,
    },
    /// The stream itself is unreadable: a bad header, truncation, or a
    /// corrupt compressed stream.
    #[error("layer stream {}: {reason}", position(.after))]
    Stream {
        /// The last entry read before the failure, if any.
        after: Option<String>,
        /// What went wrong, in words.
        reason: String,
        /// The underlying I/O or decoding error, if any.
        #[source]
        source: Option<io::Error>,
    },
}

/// `: <OS error>` when there is one, so "cannot write the file's data" says why.
fn cause(source: &Option<io::Error>) -> String {
    source.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
}

fn position(after: &Option<String>) -> String {
    match after {
        Some(p) => format!("after entry {p:?}"),
        None => "before the first entry".to_owned(),
    }
}

impl UnpackError {
    /// The entry the error is about, for callers that want to report it in a
    /// structured form.
    pub fn entry_path(&self) -> Option<&str> {
        match self {
            UnpackError::Entry { path, .. } => Some(path),
            UnpackError::Stream { after, .. } | UnpackError::TooLarge { after, .. } => after.as_deref(),
            UnpackError::Root { .. } => None,
        }
    }
}

/// Unpacks one uncompressed layer tar onto `root`, on top of whatever lower
/// layers left there.
///
/// `reader` is the tar stream itself; decompress first with
/// [`open_layer_stream`](crate::decompress::open_layer_stream). The whole
/// stream is consumed, so a compressed stream's trailer is verified. On error
/// the directory holds a partial layer and should be discarded.
///
/// See the module documentation for how hostile paths are contained.
///
/// # Errors
///
/// [`UnpackError::Entry`] when an entry is hostile in a way that cannot be
/// contained (a hardlink out of the root) or cannot be applied;
/// [`UnpackError::Stream`] when the stream is truncated or corrupt;
/// [`UnpackError::Root`] when `root` cannot be opened.
pub fn unpack_layer(reader: impl Read, root: &Path, opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
    unpack_with(reader, root, opts, false)
}

fn unpack_with(
    reader: impl Read,
    root: &Path,
    opts: &UnpackOptions,
    force_walk: bool,
) -> Result<UnpackStats, UnpackError> {
    let root_err = |source: io::Error| UnpackError::Root {
        path: root.to_owned(),
        source,
    };
    let root_fd = rfs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| root_err(e.into()))?;
    let mut u = Unpacker::new(root_fd, opts, force_walk).map_err(|e| root_err(e.into()))?;

    let mut archive = tar::Archive::new(EofTracker {
        inner: reader,
        hit_eof: false,
        read: 0,
        limit: opts.max_bytes,
    });
    let too_large = |u: &Unpacker<'_>| UnpackError::TooLarge {
        limit: opts.max_bytes,
        after: u.last.clone(),
    };
    {
        let entries = archive.entries().map_err(|e| u.stream_err("cannot read the tar", e))?;
        for entry in entries {
            let mut entry = match entry {
                Err(e) if is_over_limit(&e) => return Err(too_large(&u)),
                e => e.map_err(|e| u.stream_err("cannot read the next tar header (truncated or corrupt layer)", e))?,
            };
            match u.entry(&mut entry) {
                Err(UnpackError::Entry { source: Some(e), .. }) if is_over_limit(&e) => return Err(too_large(&u)),
                r => r?,
            }
        }
    }
    let mut tail = archive.into_inner();
    if tail.hit_eof {
        return Err(UnpackError::Stream {
            after: u.last.clone(),
            reason: "the tar ends without an end-of-archive marker; the layer is truncated".to_owned(),
            source: None,
        });
    }
    // Read whatever follows the end marker (usually zero padding), so a
    // compressed stream is decoded to its end and its checksum verified.
    io::copy(&mut tail, &mut io::sink()).map_err(|e| {
        if is_over_limit(&e) {
            return too_large(&u);
        }
        u.stream_err(
            "the data after the end-of-archive marker is corrupt (truncated or damaged compressed stream)",
            e,
        )
    })?;
    u.finish_dirs()?;
    Ok(u.stats)
}

/// Remembers whether the underlying stream reached EOF, which is how a tar
/// that stops without its end-of-archive marker is told apart from a complete
/// one (the `tar` crate treats both as the end).
///
/// It also counts the bytes read and fails a read that goes past `limit`, so a
/// decompression bomb stops there, with an error [`is_over_limit`] recognises.
struct EofTracker<R> {
    inner: R,
    hit_eof: bool,
    read: u64,
    limit: u64,
}

/// The message of the error [`EofTracker`] returns past its limit.
const OVER_LIMIT: &str = "kiln: layer size limit reached";

fn is_over_limit(e: &io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.to_string().contains(OVER_LIMIT) {
            return true;
        }
        cur = c.source();
    }
    false
}

impl<R: Read> Read for EofTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read >= self.limit && !buf.is_empty() {
            // One byte more than the limit proves the stream goes on.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? > 0 {
                return Err(io::Error::other(OVER_LIMIT));
            }
            self.hit_eof = true;
            return Ok(0);
        }
        let room = (self.limit - self.read).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..room])?;
        self.read += n as u64;
        if n == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        Ok(n)
    }
}

/// Identity of a directory: (st_dev, st_ino).
type DirId = (u64, u64);

/// A directory entry's metadata that must wait until everything inside it
/// has been written (creating children changes a directory's mtime).
struct DeferredDir {
    comps: Vec<Vec<u8>>,
    shown: String,
    mode: u32,
    times: Timestamps,
}

/// Metadata of one entry, gathered from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    times: Timestamps,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Unpacker<'o> {
    root: OwnedFd,
    root_id: DirId,
    opts: &'o UnpackOptions,
    is_root: bool,
    use_openat2: bool,
    stats: UnpackStats,
    /// Last entry name, for stream errors.
    last: Option<String>,
    /// (parent directory, name) of every entry this layer wrote.
    written: HashSet<(DirId, Vec<u8>)>,
    /// Directories that contain something this layer wrote, up to the root.
    ancestors: HashSet<DirId>,
    deferred: Vec<DeferredDir>,
    deferred_index: HashMap<Vec<Vec<u8>>, usize>,
    buf: Vec<u8>,
}

fn dir_id(fd: BorrowedFd<'_>) -> rustix::io::Result<DirId> {
    let st = rfs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

fn is_dir(st: &rfs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

impl<'o> Unpacker<'o> {
    fn new(root: OwnedFd, opts: &'o UnpackOptions, force_walk: bool) -> rustix::io::Result<Self> {
        let root_id = dir_id(root.as_fd())?;
        // Probe once. ENOSYS means an old kernel; EPERM (or anything else)
        // usually means a seccomp profile that does not know the syscall.
        let use_openat2 = !force_walk
            && rfs::openat2(
                &root,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )
            .is_ok();
        Ok(Unpacker {
            root,
            root_id,
            opts,
            is_root: rustix::process::geteuid().is_root(),
            use_openat2,
            stats: UnpackStats::default(),
            last: None,
            written: HashSet::new(),
            ancestors: HashSet::new(),
            deferred: Vec::new(),
            deferred_index: HashMap::new(),
            buf: vec![0; COPY_BUFFER],
        })
    }

    fn stream_err(&self, reason: &str, source: io::Error) -> UnpackError {
        UnpackError::Stream {
            after: self.last.clone(),
            reason: reason.to_owned(),
            source: Some(source),
        }
    }

    // ---- path resolution -------------------------------------------------

    /// Opens the directory at `comps` (a cleaned path) as an `O_PATH` fd,
    /// following symlinks as if the root were `/`. Never creates anything.
    fn open_dir(&self, comps: &[Vec<u8>]) -> rustix::io::Result<OwnedFd> {
        if comps.is_empty() {
            return rfs::openat(
                &self.root,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            );
        }
        if self.use_openat2 {
            let path = comps.join(&b'/');
            let mut tries = 0;
            loop {
                match rfs::openat2(
                    &self.root,
                    &path,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                ) {
                    // EAGAIN: a concurrent rename somewhere on the system
                    // made the kernel unsure the lookup stayed inside.
                    Err(Errno::AGAIN) if tries < 32 => tries += 1,
                    r => return r,
                }
            }
        }
        walk_in_root(self.root.as_fd(), self.root_id, comps, false)
    }

    /// Like [`Self::open_dir`], but creates missing directories (mode 0755,
    /// as containerd does), including the target of a dangling symlink.
    fn ensure_dir(&self, comps: &[Vec<u8>]) -> rustix::io::Result<OwnedFd> {
        match self.open_dir(comps) {
            Err(Errno::NOENT) => walk_in_root(self.root.as_fd(), self.root_id, comps, true),
            r => r,
        }
    }

    // ---- bookkeeping for whiteouts ----------------------------------------

    /// Records that this layer wrote `name` in `parent`, and that `parent`
    /// and every directory above it hold content of this layer.
    fn mark_written(&mut self, parent: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
        let id = dir_id(parent)?;
        self.written.insert((id, name.to_vec()));
        self.mark_dir_chain(parent, id)
    }

    fn mark_dir_chain(&mut self, dir: BorrowedFd<'_>, id: DirId) -> rustix::io::Result<()> {
        if !self.ancestors.insert(id) || id == self.root_id {
            return Ok(());
        }
        let mut cur = rfs::openat(
            dir,
            "..",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Bounded: a path inside the root cannot be deeper than PATH_MAX/2.
        for _ in 0..4096 {
            let id = dir_id(cur.as_fd())?;
            if !self.ancestors.insert(id) || id == self.root_id {
                break;
            }
            let up = rfs::openat(
                &cur,
                "..",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            if dir_id(up.as_fd())? == id {
                break; // the filesystem root; we left ours somehow
            }
            cur = up;
        }
        Ok(())
    }

    fn was_written(&self, parent: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<bool> {
        Ok(self.written.contains(&(dir_id(parent)?, name.to_vec())))
    }

    // ---- entries ------------------------------------------------------------

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        self.stats.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        self.last = Some(shown.clone());
        let fail = |reason: &str, source: Option<io::Error>| UnpackError::Entry {
            path: shown.clone(),
            reason: reason.to_owned(),
            source,
        };

        let header_type = entry.header().entry_type();
        // Old-style regular files ('\0') named with a trailing slash are
        // directories, as in GNU tar and Go's archive/tar.
        let old_style_dir = entry.header().as_bytes()[156] == 0 && raw.ends_with(b"/");
        let comps = clean_path(&raw, false).map_err(|reason| fail(reason, None))?;
        let Some((name, parent)) = comps.split_last() else {
            // "./" and friends: the root's own metadata is the caller's.
            self.stats.skipped += 1;
            return Ok(());
        };

        if name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(parent, name, &shown);
        }

        use tar::EntryType as T;
        let kind = match header_type {
            _ if old_style_dir => T::Directory,
            T::Regular | T::Continuous | T::GNUSparse => T::Regular,
            T::Directory | T::Symlink | T::Link | T::Fifo | T::Char | T::Block => header_type,
            _ => {
                self.stats.skipped += 1;
                return Ok(());
            }
        };
        if matches!(kind, T::Char | T::Block) && !self.opts.allow_devices {
            self.stats.devices_skipped += 1;
            return Ok(());
        }

        let meta = read_meta(entry).map_err(|e| fail("invalid header", Some(e)))?;
        let pfd = self.ensure_dir(parent).map_err(|e| {
            fail(
                "cannot create or open its parent directory inside the root",
                Some(e.into()),
            )
        })?;
        let pfd = pfd.as_fd();

        match kind {
            T::Regular => self.regular(entry, pfd, name, &meta, &shown)?,
            T::Directory => {
                self.directory(pfd, name, &meta, &shown)?;
                let final_mode = meta.mode;
                self.defer_dir(&comps, &shown, final_mode, meta.times);
            }
            T::Symlink => self.symlink(entry, pfd, name, &meta, &shown)?,
            T::Link => self.hardlink(entry, pfd, &comps, &shown)?,
            T::Fifo | T::Char | T::Block => self.special(entry, kind, pfd, name, &meta, &shown)?,
            _ => unreachable!("filtered above"),
        }
        self.mark_written(pfd, name)
            .map_err(|e| fail("cannot inspect its parent directory", Some(e.into())))
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let fail = |reason: &str, e: io::Error| entry_err(shown, reason, e);
        remove_all(pfd, name).map_err(|e| fail("cannot replace what is there", e.into()))?;
        let fd = rfs::openat(
            pfd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| fail("cannot create the file", e.into()))?;
        let mut file = File::from(fd);
        let expected = entry.size();
        let written = copy_data(entry, &mut file, &mut self.buf).map_err(|e| match e {
            CopyError::Read(e) => fail("cannot read the file's data (truncated or corrupt layer)", e),
            CopyError::Write(e) => fail("cannot write the file's data", e),
        })?;
        if written != expected {
            return Err(UnpackError::Entry {
                path: shown.to_owned(),
                reason: format!(
                    "the layer ends inside this file's data ({written} of {expected} bytes); \
                     the layer is truncated"
                ),
                source: None,
            });
        }
        self.stats.bytes += written;
        self.stats.files += 1;
        if self.opts.same_owner {
            let (uid, gid) = ids(meta).map_err(|r| entry_err_plain(shown, r))?;
            rfs::fchown(&file, Some(uid), Some(gid)).map_err(|e| fail("cannot set its owner", e.into()))?;
        }
        // After chown, which clears setuid/setgid bits.
        rfs::fchmod(&file, Mode::from_raw_mode(meta.mode)).map_err(|e| fail("cannot set its mode", e.into()))?;
        for (k, v) in &meta.xattrs {
            if !xattr_allowed(k) || rfs::fsetxattr(&file, k.as_slice(), v, XattrFlags::empty()).is_err() {
                self.stats.xattrs_skipped += 1;
            }
        }
        rfs::futimens(&file, &meta.times).map_err(|e| fail("cannot set its mtime", e.into()))?;
        Ok(())
    }

    fn directory(&mut self, pfd: BorrowedFd<'_>, name: &[u8], meta: &Meta, shown: &str) -> Result<(), UnpackError> {
        let fail = |reason: &str, e: Errno| entry_err(shown, reason, e.into());
        // A directory merges with a directory from a lower layer; anything
        // else in the way (file, symlink, device) is replaced.
        let exists = match rfs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => true,
            Ok(_) => {
                remove_all(pfd, name).map_err(|e| fail("cannot replace what is there", e))?;
                false
            }
            Err(Errno::NOENT) => false,
            Err(e) => return Err(fail("cannot inspect what is there", e)),
        };
        if !exists {
            rfs::mkdirat(pfd, name, Mode::from_raw_mode(0o700)).map_err(|e| fail("cannot create the directory", e))?;
        }
        self.stats.dirs += 1;
        if self.opts.same_owner {
            let (uid, gid) = ids(meta).map_err(|r| entry_err_plain(shown, r))?;
            rfs::chownat(pfd, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| fail("cannot set its owner", e))?;
        }
        // Unprivileged, keep the directory writable until the end so later
        // entries can go inside it; the exact mode is set with the mtime.
        let now_mode = if self.is_root { meta.mode } else { meta.mode | 0o700 };
        // chmodat follows a final symlink, but this is the directory we just
        // checked or made, and nothing else writes here while we unpack.
        rfs::chmodat(pfd, name, Mode::from_raw_mode(now_mode), AtFlags::empty())
            .map_err(|e| fail("cannot set its mode", e))?;
        self.set_xattrs_at(pfd, name, &meta.xattrs);
        Ok(())
    }

    fn defer_dir(&mut self, comps: &[Vec<u8>], shown: &str, mode: u32, times: Timestamps) {
        let d = DeferredDir {
            comps: comps.to_vec(),
            shown: shown.to_owned(),
            mode,
            times,
        };
        // A repeated directory entry keeps its first position (so parents
        // still come before children) but takes the latest metadata.
        match self.deferred_index.get(comps) {
            Some(&i) => self.deferred[i] = d,
            None => {
                self.deferred_index.insert(comps.to_vec(), self.deferred.len());
                self.deferred.push(d);
            }
        }
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let fail = |reason: &str, e: Errno| entry_err(shown, reason, e.into());
        let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
        if target.is_empty() {
            return Err(entry_err_plain(shown, "symlink has an empty target".to_owned()));
        }
        if target.contains(&0) {
            return Err(entry_err_plain(shown, "symlink target contains a NUL byte".to_owned()));
        }
        remove_all(pfd, name).map_err(|e| fail("cannot replace what is there", e))?;
        // The target is stored verbatim: where it points is only interpreted
        // when a later path is resolved, and that is contained in the root.
        rfs::symlinkat(target.as_slice(), pfd, name).map_err(|e| fail("cannot create the symlink", e))?;
        self.stats.symlinks += 1;
        if self.opts.same_owner {
            let (uid, gid) = ids(meta).map_err(|r| entry_err_plain(shown, r))?;
            rfs::chownat(pfd, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| fail("cannot set its owner", e))?;
        }
        self.set_xattrs_at(pfd, name, &meta.xattrs);
        rfs::utimensat(pfd, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| fail("cannot set its mtime", e))?;
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        pfd: BorrowedFd<'_>,
        comps: &[Vec<u8>],
        shown: &str,
    ) -> Result<(), UnpackError> {
        let name = comps.last().expect("non-empty");
        let fail = |reason: String, e: Errno| UnpackError::Entry {
            path: shown.to_owned(),
            reason,
            source: Some(e.into()),
        };
        let raw = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
        let shown_target = String::from_utf8_lossy(&raw).into_owned();
        let target = clean_path(&raw, true)
            .map_err(|r| entry_err_plain(shown, format!("hardlink target {shown_target:?}: {r}")))?;
        let Some((tname, tparent)) = target.split_last() else {
            return Err(entry_err_plain(
                shown,
                format!("hardlink target {shown_target:?} is the root directory"),
            ));
        };
        let missing = || {
            entry_err_plain(
                shown,
                format!("hardlink target {shown_target:?} does not exist in this layer or the ones below"),
            )
        };
        let tpfd = match self.open_dir(tparent) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Err(missing()),
            Err(e) => {
                return Err(fail(
                    format!("cannot open the directory of hardlink target {shown_target:?}"),
                    e,
                ));
            }
        };
        match rfs::statat(&tpfd, tname.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => {
                return Err(entry_err_plain(
                    shown,
                    format!("hardlink target {shown_target:?} is a directory"),
                ));
            }
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(fail(format!("cannot inspect hardlink target {shown_target:?}"), e)),
        }
        if dir_id(tpfd.as_fd()).ok() == dir_id(pfd).ok() && tname == name {
            // A link to itself: the file is already there.
            return Ok(());
        }
        remove_all(pfd, name).map_err(|e| fail("cannot replace what is there".to_owned(), e))?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        rfs::linkat(&tpfd, tname.as_slice(), pfd, name.as_slice(), AtFlags::empty())
            .map_err(|e| fail(format!("cannot link to {shown_target:?}"), e))?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn special<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        kind: tar::EntryType,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let fail = |reason: &str, e: Errno| entry_err(shown, reason, e.into());
        let (file_type, dev) = match kind {
            tar::EntryType::Fifo => (FileType::Fifo, 0),
            _ => {
                let h = entry.header();
                let major = h
                    .device_major()
                    .map_err(|e| entry_err(shown, "invalid device major number", e))?
                    .unwrap_or(0);
                let minor = h
                    .device_minor()
                    .map_err(|e| entry_err(shown, "invalid device minor number", e))?
                    .unwrap_or(0);
                let t = if kind == tar::EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                (t, rfs::makedev(major, minor))
            }
        };
        remove_all(pfd, name).map_err(|e| fail("cannot replace what is there", e))?;
        rfs::mknodat(pfd, name, file_type, Mode::from_raw_mode(0o600), dev)
            .map_err(|e| fail("cannot create the node", e))?;
        if file_type == FileType::Fifo {
            self.stats.fifos += 1;
        } else {
            self.stats.devices += 1;
        }
        if self.opts.same_owner {
            let (uid, gid) = ids(meta).map_err(|r| entry_err_plain(shown, r))?;
            rfs::chownat(pfd, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| fail("cannot set its owner", e))?;
        }
        rfs::chmodat(pfd, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
            .map_err(|e| fail("cannot set its mode", e))?;
        self.set_xattrs_at(pfd, name, &meta.xattrs);
        rfs::utimensat(pfd, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| fail("cannot set its mtime", e))?;
        Ok(())
    }

    /// Sets xattrs on a non-regular entry without following it. There is no
    /// `lsetxattrat`, so the path goes through the parent's fd in /proc;
    /// only the parent (already resolved inside the root) is a magic link.
    fn set_xattrs_at(&mut self, pfd: BorrowedFd<'_>, name: &[u8], xattrs: &[(Vec<u8>, Vec<u8>)]) {
        if xattrs.is_empty() {
            return;
        }
        let mut path = format!("/proc/self/fd/{}/", pfd.as_raw_fd()).into_bytes();
        path.extend_from_slice(name);
        for (k, v) in xattrs {
            if !xattr_allowed(k) || rfs::lsetxattr(path.as_slice(), k.as_slice(), v, XattrFlags::empty()).is_err() {
                self.stats.xattrs_skipped += 1;
            }
        }
    }

    // ---- whiteouts ------------------------------------------------------------

    fn whiteout(&mut self, parent: &[Vec<u8>], name: &[u8], shown: &str) -> Result<(), UnpackError> {
        let fail = |reason: &str, e: Errno| entry_err(shown, reason, e.into());
        if name == OPAQUE_MARKER {
            self.stats.whiteouts += 1;
            let dfd = self
                .ensure_dir(parent)
                .map_err(|e| fail("cannot create or open the opaque directory", e))?;
            let id = dir_id(dfd.as_fd()).map_err(|e| fail("cannot inspect the opaque directory", e))?;
            self.mark_dir_chain(dfd.as_fd(), id)
                .map_err(|e| fail("cannot inspect the opaque directory", e))?;
            return match self.opts.whiteouts {
                WhiteoutMode::Apply => self
                    .prune_lower(dfd.as_fd())
                    .map_err(|e| fail("cannot empty the opaque directory", e)),
                WhiteoutMode::Keep => {
                    set_opaque_xattr(dfd.as_fd()).map_err(|e| fail("cannot mark the directory opaque for overlayfs", e))
                }
            };
        }
        if name.starts_with(AUFS_META_PREFIX) {
            self.stats.skipped += 1;
            return Ok(());
        }
        let target = &name[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(entry_err_plain(shown, "whiteout names no file".to_owned()));
        }
        self.stats.whiteouts += 1;
        match self.opts.whiteouts {
            WhiteoutMode::Apply => {
                let pfd = match self.open_dir(parent) {
                    Ok(fd) => fd,
                    // Nothing below to delete.
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(()),
                    Err(e) => return Err(fail("cannot open the whiteout's directory", e)),
                };
                // A whiteout only hides lower layers, never its own layer.
                if self
                    .was_written(pfd.as_fd(), target)
                    .map_err(|e| fail("cannot inspect the whiteout's directory", e))?
                {
                    return Ok(());
                }
                remove_all(pfd.as_fd(), target).map_err(|e| fail("cannot delete the whited-out path", e))
            }
            WhiteoutMode::Keep => {
                let pfd = self
                    .ensure_dir(parent)
                    .map_err(|e| fail("cannot create or open the whiteout's directory", e))?;
                if self
                    .was_written(pfd.as_fd(), target)
                    .map_err(|e| fail("cannot inspect the whiteout's directory", e))?
                {
                    return Ok(());
                }
                remove_all(pfd.as_fd(), target).map_err(|e| fail("cannot replace what is there", e))?;
                rfs::mknodat(
                    &pfd,
                    target,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rfs::makedev(0, 0),
                )
                .map_err(|e| fail("cannot create the overlayfs whiteout device", e))?;
                self.mark_written(pfd.as_fd(), target)
                    .map_err(|e| fail("cannot inspect the whiteout's directory", e))
            }
        }
    }

    /// Removes from `dir` everything that this layer did not write, keeping
    /// directories that hold something it did (and pruning inside them).
    fn prune_lower(&self, dir: BorrowedFd<'_>) -> rustix::io::Result<()> {
        let id = dir_id(dir)?;
        for child in list_dir(dir)? {
            let st = match rfs::statat(dir, child.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e),
            };
            let ours = self.written.contains(&(id, child.clone()));
            if is_dir(&st) {
                if ours || self.ancestors.contains(&(st.st_dev, st.st_ino)) {
                    let sub = rfs::openat(
                        dir,
                        child.as_slice(),
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    self.prune_lower(sub.as_fd())?;
                } else {
                    remove_all(dir, &child)?;
                }
            } else if !ours {
                remove_all(dir, &child)?;
            }
        }
        Ok(())
    }

    // ---- end ------------------------------------------------------------------

    /// Applies directory mtimes (and, unprivileged, exact modes) deepest
    /// last-listed first, after all their contents exist.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        for d in self.deferred.iter().rev() {
            let fail = |reason: &str, e: Errno| entry_err(&d.shown, reason, e.into());
            let (name, parent) = d.comps.split_last().expect("non-empty");
            let pfd = match self.open_dir(parent) {
                Ok(fd) => fd,
                // Removed or replaced by a later entry.
                Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
                Err(e) => return Err(fail("cannot reopen the directory", e)),
            };
            match rfs::statat(&pfd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if is_dir(&st) => {}
                Ok(_) | Err(Errno::NOENT) => continue,
                Err(e) => return Err(fail("cannot reopen the directory", e)),
            }
            if !self.is_root {
                rfs::chmodat(&pfd, name.as_slice(), Mode::from_raw_mode(d.mode), AtFlags::empty())
                    .map_err(|e| fail("cannot set its mode", e))?;
            }
            rfs::utimensat(&pfd, name.as_slice(), &d.times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| fail("cannot set its mtime", e))?;
        }
        Ok(())
    }
}

fn entry_err(shown: &str, reason: &str, source: io::Error) -> UnpackError {
    UnpackError::Entry {
        path: shown.to_owned(),
        reason: reason.to_owned(),
        source: Some(source),
    }
}

fn entry_err_plain(shown: &str, reason: String) -> UnpackError {
    UnpackError::Entry {
        path: shown.to_owned(),
        reason,
        source: None,
    }
}

/// Never set from a layer: these would let a layer forge overlayfs metadata
/// (redirects, metacopy, opaque) on a directory later used as an overlay
/// layer.
fn xattr_allowed(name: &[u8]) -> bool {
    !(name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay."))
}

fn set_opaque_xattr(dir: BorrowedFd<'_>) -> rustix::io::Result<()> {
    let fd = rfs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // trusted.* needs CAP_SYS_ADMIN; overlayfs mounted with `userxattr`
    // (rootless) reads the user.* form instead.
    rfs::fsetxattr(&fd, "trusted.overlay.opaque", b"y", XattrFlags::empty())
        .or_else(|_| rfs::fsetxattr(&fd, "user.overlay.opaque", b"y", XattrFlags::empty()))
}

fn ids(meta: &Meta) -> Result<(Uid, Gid), String> {
    let uid = u32::try_from(meta.uid)
        .ok()
        .filter(|&u| u != u32::MAX)
        .ok_or_else(|| format!("uid {} is out of range", meta.uid))?;
    let gid = u32::try_from(meta.gid)
        .ok()
        .filter(|&g| g != u32::MAX)
        .ok_or_else(|| format!("gid {} is out of range", meta.gid))?;
    Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
    let h = entry.header();
    let old = h.as_old();
    let mode = lenient(h.mode().map(u64::from), &old.mode)? as u32 & 0o7777;
    // The tar crate already applied PAX uid/gid to the header.
    let uid = lenient(h.uid(), &old.uid)?;
    let gid = lenient(h.gid(), &old.gid)?;
    let header_mtime = Timespec {
        tv_sec: i64::try_from(lenient(h.mtime(), &old.mtime)?).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let mut mtime = None;
    let mut atime = None;
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                mtime = parse_pax_time(ext.value_bytes());
            } else if key == b"atime" {
                atime = parse_pax_time(ext.value_bytes());
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    let mtime = mtime.unwrap_or(header_mtime);
    Ok(Meta {
        mode,
        uid,
        gid,
        times: Timestamps {
            last_access: atime.unwrap_or(mtime),
            last_modification: mtime,
        },
        xattrs,
    })
}

/// A numeric header field left blank (all NULs or spaces) reads as 0, as
/// in GNU tar and Go's archive/tar; some writers leave unused fields empty.
fn lenient(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        r => r,
    }
}

/// Parses a PAX time such as `1700000000.5` or `-1.25`; `None` if malformed
/// (the header's whole-second mtime is used then).
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(match (neg, nanos) {
        (false, _) => Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
        (true, 0) => Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        },
        (true, _) => Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        },
    })
}

/// Splits a tar name into clean components: no empty, `.` or `..` parts.
///
/// For entry names `..` is clamped at the root (contained). For hardlink
/// targets (`strict`) climbing above the root is an error: a link must name
/// a file of the rootfs, and a target outside it can only be an attack.
fn clean_path(raw: &[u8], strict: bool) -> Result<Vec<Vec<u8>>, &'static str> {
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() && strict {
                    return Err("path escapes the root");
                }
            }
            _ => out.push(part.to_vec()),
        }
    }
    Ok(out)
}

/// The names in a directory, without `.` and `..`.
fn list_dir(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<Vec<u8>>> {
    let fd = rfs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for ent in rfs::Dir::new(fd)? {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

/// Removes `name` in `parent`, recursively if it is a directory, without
/// following symlinks anywhere. Missing is fine.
fn remove_all(parent: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    match rfs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    let dir = rfs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for child in list_dir(dir.as_fd())? {
        remove_all(dir.as_fd(), &child)?;
    }
    match rfs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Resolves `comps` below `root` one component at a time, with the semantics
/// of `RESOLVE_IN_ROOT`: symlinks are expanded (absolute ones from the root),
/// and `..` never leaves the root. With `create`, missing directories are
/// made along the way. Returns an `O_PATH` fd of the final directory.
fn walk_in_root(root: BorrowedFd<'_>, root_id: DirId, comps: &[Vec<u8>], create: bool) -> rustix::io::Result<OwnedFd> {
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut pending: std::collections::VecDeque<Vec<u8>> = comps.iter().cloned().collect();
    // None stands for the root itself.
    let mut cur: Option<OwnedFd> = None;
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c.is_empty() || c == b"." {
            continue;
        }
        let here = cur.as_ref().map_or(root, |f| f.as_fd());
        if c == b".." {
            if cur.is_some() {
                let up = rfs::openat(here, "..", dir_flags, Mode::empty())?;
                cur = if dir_id(up.as_fd())? == root_id { None } else { Some(up) };
            }
            continue;
        }
        let open = || {
            rfs::openat(
                here,
                c.as_slice(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        let fd = match open() {
            Err(Errno::NOENT) if create => {
                match rfs::mkdirat(here, c.as_slice(), Mode::from_raw_mode(0o755)) {
                    // Exactly 0755, whatever the process umask.
                    Ok(()) => rfs::chmodat(here, c.as_slice(), Mode::from_raw_mode(0o755), AtFlags::empty())?,
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                open()?
            }
            r => r?,
        };
        let st = rfs::fstat(&fd)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => cur = Some(fd),
            FileType::Symlink => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP);
                }
                let target = rfs::readlinkat(&fd, "", Vec::new())?;
                let target = target.as_bytes();
                if target.starts_with(b"/") {
                    cur = None;
                }
                for part in target.split(|&b| b == b'/').rev() {
                    pending.push_front(part.to_vec());
                }
            }
            _ => return Err(Errno::NOTDIR),
        }
    }
    match cur {
        Some(fd) => Ok(fd),
        None => rfs::openat(root, ".", dir_flags, Mode::empty()),
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies file data, turning all-zero chunks into holes so sparse files
/// (and zero-filled tar bombs) do not cost disk space.
fn copy_data(src: &mut impl Read, dst: &mut File, buf: &mut [u8]) -> Result<u64, CopyError> {
    let mut total: u64 = 0;
    let mut ends_in_hole = false;
    loop {
        let n = match src.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        let chunk = &buf[..n];
        if chunk.iter().all(|&b| b == 0) {
            dst.seek(SeekFrom::Current(n as i64)).map_err(CopyError::Write)?;
            ends_in_hole = true;
        } else {
            dst.write_all(chunk).map_err(CopyError::Write)?;
            ends_in_hole = false;
        }
        total += n as u64;
    }
    if ends_in_hole {
        dst.set_len(total).map_err(CopyError::Write)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_contains_dotdot() {
        let c = clean_path(b"../../etc/./passwd", false).unwrap();
        assert_eq!(c, vec![b"etc".to_vec(), b"passwd".to_vec()]);
        assert_eq!(
            clean_path(b"/a//b/../c/", false).unwrap(),
            vec![b"a".to_vec(), b"c".to_vec()]
        );
        assert!(clean_path(b"../x", true).is_err());
        assert!(clean_path(b"a/../../x", true).is_err());
        assert_eq!(clean_path(b"/etc/passwd", true).unwrap().len(), 2);
        assert!(clean_path(b"a\0b", false).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("64GiB"), Some(64 << 30));
        assert_eq!(parse_size("2t"), Some(2 << 40));
        assert_eq!(parse_size("1 KB"), Some(1024));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("5Q"), None);
    }

    /// A layer that expands past the limit stops there, however it is compressed, and says
    /// so (a bomb); one that fits exactly is fine.
    #[test]
    fn size_limit_stops_a_bomb() {
        let mut b = tar::Builder::new(Vec::new());
        for name in ["a", "b", "c"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(1 << 20);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, std::io::repeat(0).take(1 << 20)).unwrap();
        }
        let data = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let opts = UnpackOptions {
            max_bytes: 2 << 20,
            ..UnpackOptions::default()
        };
        let stream = crate::decompress::open_layer_stream(std::io::Cursor::new(gz)).unwrap();
        let e = unpack_layer(stream, tmp.path(), &opts).unwrap_err();
        assert!(
            matches!(e, UnpackError::TooLarge { limit, .. } if limit == 2 << 20),
            "{e}"
        );
        assert!(e.to_string().contains("decompression bomb"), "{e}");
        let fits = UnpackOptions {
            max_bytes: data.len() as u64,
            ..UnpackOptions::default()
        };
        let tmp2 = tempfile::tempdir().unwrap();
        unpack_layer(&data[..], tmp2.path(), &fits).unwrap();
    }

    #[test]
    fn pax_times() {
        let t = parse_pax_time(b"1700000000.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 250_000_000));
        let t = parse_pax_time(b"-1.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 500_000_000));
        let t = parse_pax_time(b"42").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (42, 0));
        let t = parse_pax_time(b"1.1234567891").unwrap();
        assert_eq!(t.tv_nsec, 123_456_789);
        assert!(parse_pax_time(b"").is_none());
        assert!(parse_pax_time(b"abc").is_none());
        assert!(parse_pax_time(b"+5").is_none());
    }

    fn id_of(fd: &OwnedFd) -> DirId {
        dir_id(fd.as_fd()).unwrap()
    }

    /// The fallback walk must agree with the kernel's RESOLVE_IN_ROOT.
    #[test]
    fn walk_matches_openat2() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/", root.join("toroot")).unwrap();
        symlink("../../../../..", root.join("a/up")).unwrap();
        symlink("/etc", root.join("a/b/abs")).unwrap();
        symlink("b/c", root.join("a/rel")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink("missing/x", root.join("dangling")).unwrap();
        let root_fd = rfs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let rid = id_of(&root_fd);
        let cases: &[&str] = &[
            "a",
            "a/b/c",
            "toroot",
            "toroot/etc",
            "a/up",
            "a/up/etc",
            "a/b/abs",
            "a/rel",
            "a/rel/../..",
            "toroot/a/up/a/b",
            "loop",
            "dangling",
            "etc/nope",
        ];
        for case in cases {
            // Raw components: the walk must handle `..` like the kernel.
            let comps: Vec<Vec<u8>> = case.split('/').map(|c| c.as_bytes().to_vec()).collect();
            let kernel = rfs::openat2(
                &root_fd,
                *case,
                OFlags::PATH | OFlags::DIRECTORY,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            );
            let walk = walk_in_root(root_fd.as_fd(), rid, &comps, false);
            match (kernel, walk) {
                (Ok(k), Ok(w)) => assert_eq!(id_of(&k), id_of(&w), "{case}"),
                (Err(k), Err(w)) => assert_eq!(k, w, "{case}"),
                (k, w) => panic!("{case}: kernel {k:?} walk {w:?}"),
            }
        }
        // Creating through a dangling symlink makes its target, inside.
        let made = walk_in_root(root_fd.as_fd(), rid, &[b"dangling".to_vec()], true).unwrap();
        assert_eq!(id_of(&made), {
            let st = std::fs::metadata(root.join("missing/x")).unwrap();
            use std::os::unix::fs::MetadataExt;
            (st.dev(), st.ino())
        });
        assert!(!tmp.path().join("missing").exists());
    }

    /// The same hostile layer, unpacked through the fallback walk.
    #[test]
    fn fallback_walk_contains_symlink_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "esc", outside.to_str().unwrap()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "up", "../../../../../..").unwrap();
        for p in ["esc/pwned", "up/pwned2", "up/esc/pwned3"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o644);
            b.append_data(&mut h, p, &b"hi"[..]).unwrap();
        }
        let data = b.into_inner().unwrap();
        let opts = UnpackOptions::default();
        unpack_with(&data[..], &root, &opts, true).unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        let inside = root.join(outside.strip_prefix("/").unwrap());
        assert!(inside.join("pwned").is_file());
        assert!(inside.join("pwned3").is_file());
        assert!(root.join("pwned2").is_file());
    }

    /// Whiteouts and opaque dirs through the fallback walk, across layers.
    #[test]
    fn fallback_walk_applies_whiteouts() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let layer = |entries: &[(&str, tar::EntryType)]| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, kind) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(*kind);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, name, io::empty()).unwrap();
            }
            b.into_inner().unwrap()
        };
        use tar::EntryType::{Directory as D, Regular as F};
        let opts = UnpackOptions::default();
        let l1 = layer(&[("o", D), ("o/a", F), ("o/s", D), ("o/s/b", F), ("w", F), ("v/x", F)]);
        unpack_with(&l1[..], &root, &opts, true).unwrap();
        let l2 = layer(&[("o/s/new", F), ("o/.wh..wh..opq", F), ("o/late", F), (".wh.w", F)]);
        unpack_with(&l2[..], &root, &opts, true).unwrap();
        let mut got: Vec<String> = std::fs::read_dir(root.join("o"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, ["late", "s"]);
        assert!(root.join("o/s/new").exists());
        assert!(!root.join("o/s/b").exists());
        assert!(!root.join("w").exists());
        assert!(root.join("v/x").exists());
    }
}
