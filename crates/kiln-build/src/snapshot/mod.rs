//! The snapshotter: unpacked layers, one directory per chain of layers.
//!
//! In the spirit of containerd's snapshotter, with a narrow interface:
//! [`Snapshotter::prepare`] gives a private staging directory, [`Snapshotter::commit`]
//! publishes it under its chain ID, [`Snapshotter::lease`] keeps snapshots from being
//! removed while a build uses them, and [`clear_cache`] removes them (under the GC lock).
//! [`Snapshotter::unpacked`] is the applier on top (`apply.rs`): it makes the snapshot of a
//! stack of layers from the store's blobs.
//!
//! On disk, `kiln/snapshots/<chain id>/` holds `fs/`, what the top layer of that chain
//! changed in overlayfs's upper-dir form (so a stack of `fs/` dirs is what overlay mounts as
//! lower dirs), and `complete`, the marker that makes it a snapshot. A snapshot is trusted
//! only through its marker, and the marker is written only after the layer's uncompressed
//! content was hashed while unpacking and found equal to its diff_id, then flushed to disk
//! (syncfs) and the whole directory renamed into place (then the rename fsynced). A killed
//! unpack, a half-deleted snapshot or a forged diff_id therefore never becomes a snapshot.

mod apply;
mod gc;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_oci::{Digest, Store};
use serde::{Deserialize, Serialize};

use crate::error::BuildError;
use crate::solver::LayerRef;

pub use gc::{cache_roots, clean_if_idle, clear_cache, remove_leftovers, trash};

/// The marker file of a published snapshot.
const MARKER: &str = "complete";

/// What a snapshot's marker records: the chain it is the top of and the diff_id its
/// content was verified against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    chain: Digest,
    diff_id: Digest,
}

/// The snapshots of one store, shared by the stages of a build.
pub struct Snapshotter<'a> {
    store: &'a Store,
    /// One unpack at a time within a process (stages of a build ask for the same bases).
    unpack_lock: Mutex<()>,
    /// Snapshots this process has checked or made, by chain ID: each is checked once.
    trusted: Mutex<HashMap<Digest, PathBuf>>,
}

/// A snapshot being made: a private directory beside the published ones, removed on drop
/// unless committed.
pub struct Active {
    dir: tempfile::TempDir,
}

impl Active {
    /// What becomes the published directory.
    fn snap(&self) -> PathBuf {
        self.dir.path().join("snap")
    }

    /// The directory the snapshot's content goes into (overlay's upper dir).
    pub fn upper(&self) -> PathBuf {
        self.snap().join("fs")
    }

    /// Overlay's work dir, for applying a layer through an overlay of the snapshots below.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Where that overlay is mounted.
    pub fn merged(&self) -> PathBuf {
        self.dir.path().join("merged")
    }

    /// An empty directory for overlay's lower dir when there is nothing below.
    pub fn empty(&self) -> PathBuf {
        self.dir.path().join("empty")
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl<'a> Snapshotter<'a> {
    /// The snapshotter of `store`.
    pub fn new(store: &'a Store) -> Snapshotter<'a> {
        Snapshotter {
            store,
            unpack_lock: Mutex::new(()),
            trusted: Mutex::new(HashMap::new()),
        }
    }

    /// The content directory of the published snapshot for `chain`, if there is one whose
    /// marker says it is complete and holds content hashing to `diff_id`.
    pub fn get(&self, chain: &Digest, diff_id: &Digest) -> Option<PathBuf> {
        let dir = snapshots_dir(self.store).join(chain.hex());
        let marker: Marker = serde_json::from_slice(&fs::read(dir.join(MARKER)).ok()?).ok()?;
        let want = Marker {
            chain: chain.clone(),
            diff_id: diff_id.clone(),
        };
        (marker == want && dir.join("fs").is_dir()).then(|| dir.join("fs"))
    }

    /// Starts a snapshot: a fresh staging directory with upper, work and merged dirs.
    pub fn prepare(&self) -> Result<Active, BuildError> {
        let root = snapshots_dir(self.store);
        kiln_oci::fsutil::create_private_dir(&root).map_err(io_err(&root))?;
        let dir = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&root)
            .map_err(io_err(&root))?;
        let active = Active { dir };
        // The upper dir becomes the root directory of every rootfs stacked on this
        // snapshot: exactly 0755, whatever the umask.
        for d in [active.upper(), active.work(), active.merged()] {
            kiln_oci::fsutil::create_dir_all_exact(&d, 0o755).map_err(io_err(&d))?;
        }
        Ok(active)
    }

    /// Publishes a prepared snapshot under `chain`, whose content the caller has verified
    /// to hash to `diff_id`: the content is flushed to disk, the marker written, and the
    /// directory renamed into place. Losing a race to another process that published the
    /// same chain is fine: both made the same content, and theirs is used.
    pub fn commit(&self, active: Active, chain: &Digest, diff_id: &Digest) -> Result<PathBuf, BuildError> {
        let snap = active.snap();
        let marker = serde_json::to_vec(&Marker {
            chain: chain.clone(),
            diff_id: diff_id.clone(),
        })
        .expect("markers serialise");
        let marker_path = snap.join(MARKER);
        let mut f = fs::File::create(&marker_path).map_err(io_err(&marker_path))?;
        std::io::Write::write_all(&mut f, &marker).map_err(io_err(&marker_path))?;
        // Everything unpacked reaches the disk before a marker can vouch for it (a power
        // loss must not leave a complete-looking snapshot of empty files).
        let upper = active.upper();
        let dir_fd = fs::File::open(&upper).map_err(io_err(&upper))?;
        rustix::fs::syncfs(&dir_fd).map_err(|e| io_err(&upper)(e.into()))?;
        f.sync_all().map_err(io_err(&marker_path))?;
        let root = snapshots_dir(self.store);
        let dest = root.join(chain.hex());
        let _publishing = self.publish_lock()?;
        if let Some(theirs) = self.get(chain, diff_id) {
            return Ok(theirs);
        }
        if dest.exists() {
            // Not a snapshot (no valid marker): an older layout, or something damaged.
            gc::move_to_trash(self.store, &dest).map_err(io_err(&dest))?;
        }
        kiln_oci::fsutil::rename_durable(&snap, &dest).map_err(io_err(&dest))?;
        Ok(dest.join("fs"))
    }

    /// Held while a build uses snapshots, so that `prune --cache` cannot remove them.
    pub fn lease(&self) -> Result<kiln_oci::store::LockGuard, BuildError> {
        Ok(self.store.lease()?)
    }

    /// Serialises publishing between processes: checking for a published snapshot, moving
    /// a damaged one aside and renaming a new one in happen as one step.
    fn publish_lock(&self) -> Result<fs::File, BuildError> {
        let path = snapshots_dir(self.store).join(".publish.lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io_err(&path)(e.into()))?;
        Ok(f)
    }

    /// Remembers a snapshot this process checked, so later steps do not check it again.
    fn trust(&self, chain: Digest, dir: PathBuf) -> PathBuf {
        self.trusted.lock().unwrap().insert(chain, dir.clone());
        dir
    }

    fn trusted(&self, chain: &Digest) -> Option<PathBuf> {
        self.trusted.lock().unwrap().get(chain).cloned()
    }
}

/// The directory of rootfs snapshots (one per chain of layers), which `kiln prune --cache` clears.
pub fn snapshots_dir(store: &Store) -> PathBuf {
    store.meta_dir().join("snapshots")
}

/// The OCI chain ID of a stack of layers: a snapshot's identity depends on everything below
/// it, since applying a layer reads what is already there.
pub fn chain_id(layers: &[LayerRef]) -> Digest {
    let mut chain = layers[0].diff_id.clone();
    for l in &layers[1..] {
        chain = Digest::sha256_of(format!("{chain} {}", l.diff_id).as_bytes());
    }
    chain
}
