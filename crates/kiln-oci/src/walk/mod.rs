//! Reading an image's layers as a stream of filesystem changes, without unpacking them.
//!
//! [`walk_layers`] decodes every layer once (layers in parallel, each decompressed and
//! digest-checked on its own thread), turns each tar into its [`Change`]s in tar order (a
//! path put, a whiteout, an opaque directory), and hands every entry with its bytes to a
//! [`Visitor`] made for that layer. Cataloguers and scanners are visitors, and several can
//! share one pass ([`Visitor`] is implemented for pairs and `Option`s), so an image is read
//! once however many questions are asked of it.
//!
//! The changes then replay into the final filesystem ([`Tree`]), with whiteouts and opaque
//! directories hiding only what lower layers put there (the OCI image spec's rule), and tell
//! per layer what was added, changed and removed ([`LayerDiff`]) and when a path a layer put
//! there disappears later ([`Removals`]).

mod content;
mod read;
mod tree;

use std::io::{self, Read};

pub use content::{Content, ContentReader};
pub use tree::{LayerDiff, Node, Removal, Removals, Tree};

use crate::decompress::{open_layer_stream, open_layer_stream_for_media_type};
use crate::digest::{Digest, VerifyingReader};
use crate::store::{Descriptor, Store};

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier entry of the same layer.
    Hardlink,
    /// A device, FIFO or anything else.
    Other,
}

/// An entry's metadata as its layer records it. Serializable so a layer's walk can be kept
/// by its digest (the SBOM's per-layer cache) instead of decoding the layer again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// What it is.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Content size in bytes (regular files; 0 for the rest).
    pub size: u64,
    /// Link target as written (symlinks and hard links).
    pub link: Option<String>,
}

/// One change a layer makes to the filesystem, in tar order. Paths are absolute
/// ([`absolute_entry_path`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Change {
    /// A path is added or replaced.
    Put(String, Meta),
    /// A whiteout: the path and everything under it, from lower layers, is removed.
    Whiteout(String),
    /// An opaque directory: what lower layers put under it is hidden.
    Opaque(String),
}

/// Looks at every entry of one layer while it streams past. One visitor is made per layer, so
/// a visitor needs no locking; its state is the layer's result.
pub trait Visitor {
    /// Called for every entry except whiteout markers, in tar order. `content` holds a regular
    /// file's bytes (nothing for other kinds); reading it is optional.
    fn entry(&mut self, path: &str, meta: &Meta, content: &mut Content<'_>) -> io::Result<()>;
}

/// No questions: the walk only records changes.
impl Visitor for () {
    fn entry(&mut self, _: &str, _: &Meta, _: &mut Content<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// A visitor that may be switched off.
impl<V: Visitor> Visitor for Option<V> {
    fn entry(&mut self, path: &str, meta: &Meta, content: &mut Content<'_>) -> io::Result<()> {
        match self {
            Some(v) => v.entry(path, meta, content),
            None => Ok(()),
        }
    }
}

/// Two visitors on one pass: the first sees each entry first. Put a visitor that reads whole
/// files ([`Content::whole`]) before one that streams them ([`Content::reader`]), so the
/// second reads the kept bytes instead of the layer again.
impl<A: Visitor, B: Visitor> Visitor for (A, B) {
    fn entry(&mut self, path: &str, meta: &Meta, content: &mut Content<'_>) -> io::Result<()> {
        self.0.entry(path, meta, content)?;
        self.1.entry(path, meta, content)
    }
}

type Opener<'a> = Box<dyn FnOnce() -> io::Result<Box<dyn Read>> + Send + 'a>;

/// Where one layer's bytes come from: opens the layer as a decompressed tar stream that
/// fails its last read if the bytes do not match the digest they were named by.
pub struct LayerInput<'a> {
    digest: Digest,
    open: Opener<'a>,
}

impl<'a> LayerInput<'a> {
    /// A blob of an OCI layout, checked against its descriptor's digest and size and decoded
    /// as its media type says.
    pub fn blob(store: &'a Store, desc: &'a Descriptor) -> LayerInput<'a> {
        LayerInput {
            digest: desc.digest.clone(),
            open: Box::new(move || {
                let blob = store.open_blob(&desc.digest).map_err(io::Error::other)?;
                let verified = VerifyingReader::new(blob, desc.digest.clone(), Some(desc.size));
                open_layer_stream_for_media_type(verified, &desc.media_type)
            }),
        }
    }

    /// A layer file inside a tar archive (a `docker save` tar), `size` bytes at `offset`, in
    /// any compression, checked against `diff_id` once decompressed.
    pub fn archive_entry(path: &'a std::path::Path, offset: u64, size: u64, diff_id: &'a Digest) -> LayerInput<'a> {
        LayerInput {
            digest: diff_id.clone(),
            open: Box::new(move || {
                use std::io::Seek;
                let mut f = std::fs::File::open(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                f.seek(io::SeekFrom::Start(offset))?;
                let raw = io::BufReader::with_capacity(1 << 20, f).take(size);
                let plain = open_layer_stream(raw)?;
                Ok(Box::new(VerifyingReader::new(plain, diff_id.clone(), None)) as Box<dyn Read>)
            }),
        }
    }

    /// Any other source: `open` must return the decompressed tar stream and check the bytes
    /// against `digest` itself (with [`VerifyingReader`]).
    pub fn new(digest: Digest, open: impl FnOnce() -> io::Result<Box<dyn Read>> + Send + 'a) -> LayerInput<'a> {
        LayerInput {
            digest,
            open: Box::new(open),
        }
    }

    /// The digest errors name the layer by (blob digest or diff_id).
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

/// A layer that could not be read, or does not match its digest.
#[derive(Debug, thiserror::Error)]
#[error("layer {} ({digest}): {reason}", index + 1)]
pub struct WalkError {
    /// 0-based index of the layer, base first.
    pub index: usize,
    /// The digest the layer was named by.
    pub digest: Digest,
    /// What went wrong.
    pub reason: String,
}

/// One layer, walked.
#[derive(Debug)]
pub struct LayerWalk<V> {
    /// The layer's changes in tar order.
    pub changes: Vec<Change>,
    /// The layer's visitor, holding what it found.
    pub visitor: V,
}

/// Walks `layers` (base first) on up to `jobs` threads, with a visitor from `visitor(index)`
/// for each. Every layer is read once, to its end, so its digest is checked; the first layer
/// (in order) that fails stops the walk.
pub fn walk_layers<V, F>(layers: Vec<LayerInput<'_>>, jobs: usize, visitor: F) -> Result<Vec<LayerWalk<V>>, WalkError>
where
    V: Visitor + Send,
    F: Fn(usize) -> V + Sync,
{
    // Each opener runs once, on whichever thread takes its layer.
    let slots: Vec<(Digest, std::sync::Mutex<Option<Opener<'_>>>)> = layers
        .into_iter()
        .map(|l| (l.digest, std::sync::Mutex::new(Some(l.open))))
        .collect();
    crate::parallel::try_map_ordered(&slots, jobs, |index, (digest, open)| {
        let err = |reason: String| WalkError {
            index,
            digest: digest.clone(),
            reason: explain(reason),
        };
        let open = open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("each layer is walked once");
        let mut v = visitor(index);
        let changes = read::layer(open, &mut v).map_err(|e| err(e.to_string()))?;
        Ok(LayerWalk { changes, visitor: v })
    })
}

/// The verifying reader's size and digest checks surface through the decoder and the tar
/// reader; say plainly what they mean.
fn explain(reason: String) -> String {
    if reason.contains("digest mismatch")
        || reason.contains("size mismatch")
        || reason.contains("larger than the expected")
    {
        format!("the blob does not match its digest ({reason})")
    } else {
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Compression, LayerEntry, LayerInfo, LayerWriter};

    fn layer(store: &Store, entries: Vec<LayerEntry>) -> LayerInfo {
        let mut w = LayerWriter::new(store, Compression::DEFAULT, Some(0)).unwrap();
        for e in &entries {
            w.append(e).unwrap();
        }
        w.finish().unwrap()
    }

    /// Keeps every file whole, and counts what it saw.
    #[derive(Default)]
    struct Files(Vec<(String, Vec<u8>)>);

    impl Visitor for Files {
        fn entry(&mut self, path: &str, meta: &Meta, content: &mut Content<'_>) -> io::Result<()> {
            if meta.kind == Kind::File {
                let data = content.whole(1 << 20)?.expect("small").to_vec();
                self.0.push((path.to_string(), data));
            }
            Ok(())
        }
    }

    /// Streams every file after another visitor kept it.
    #[derive(Default)]
    struct Streamed(u64);

    impl Visitor for Streamed {
        fn entry(&mut self, _: &str, _: &Meta, content: &mut Content<'_>) -> io::Result<()> {
            self.0 += io::copy(&mut content.reader(), &mut io::sink())?;
            Ok(())
        }
    }

    #[test]
    fn layers_stream_into_changes_a_final_tree_and_per_layer_diffs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = layer(
            &store,
            vec![
                LayerEntry::dir("app", 0o755),
                LayerEntry::file_bytes("app/a", b"alpha".to_vec(), 0o644),
                LayerEntry::file_bytes("app/b", b"beta".to_vec(), 0o644),
                LayerEntry::dir("etc", 0o755),
                LayerEntry::file_bytes("etc/conf", b"one".to_vec(), 0o600),
            ],
        );
        let top = layer(
            &store,
            vec![
                LayerEntry::dir("app", 0o755),
                LayerEntry::file_bytes("app/.wh..wh..opq", vec![], 0),
                LayerEntry::file_bytes("app/c", b"gamma".to_vec(), 0o755),
                LayerEntry::whiteout("etc/gone"),
                LayerEntry::file_bytes("etc/conf", b"two!".to_vec(), 0o600),
            ],
        );
        let descs = [base.descriptor.clone(), top.descriptor.clone()];
        let inputs = descs.iter().map(|d| LayerInput::blob(&store, d)).collect();
        let walks = walk_layers(inputs, 2, |_| (Files::default(), Streamed::default())).unwrap();
        assert_eq!(walks.len(), 2);
        let files: Vec<&str> = walks[1].visitor.0.0.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(files, ["/app/c", "/etc/conf"]);
        assert_eq!(walks[1].visitor.1.0, 9, "the streaming visitor read the kept bytes");
        assert!(walks[1].changes.contains(&Change::Opaque("/app".into())));
        assert!(walks[1].changes.contains(&Change::Whiteout("/etc/gone".into())));

        let tree = Tree::of(walks.iter().map(|w| w.changes.as_slice()));
        let paths: Vec<&str> = tree.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["/app", "/app/c", "/etc", "/etc/conf"]);
        let conf = tree.get("/etc/conf").unwrap();
        assert_eq!((conf.layer, conf.meta.size, conf.meta.mode), (1, 4, 0o600));

        let mut t = Tree::default();
        t.apply(0, &walks[0].changes);
        let diff = t.apply(1, &walks[1].changes);
        assert_eq!(diff.added, ["/app/c"]);
        assert_eq!(diff.changed, ["/app", "/etc/conf"]);
        assert_eq!(diff.removed, ["/app/a", "/app/b"]);
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_stops_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = layer(&store, vec![LayerEntry::file_bytes("f", b"hello".to_vec(), 0o644)]);
        let other = layer(&store, vec![LayerEntry::file_bytes("g", b"tampered".to_vec(), 0o644)]);
        // The first layer's name, the second's bytes.
        let mut lie = other.descriptor.clone();
        lie.digest = good.descriptor.digest.clone();
        let path = store.blob_path(&lie.digest);
        let mut perm = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&path, perm).unwrap();
        std::fs::copy(store.blob_path(&other.descriptor.digest), &path).unwrap();
        let descs = [good.descriptor.clone(), lie];
        let inputs = descs.iter().map(|d| LayerInput::blob(&store, d)).collect();
        let e = walk_layers(inputs, 1, |_| ()).unwrap_err();
        assert_eq!(e.index, 0);
        assert!(e.to_string().contains("does not match its digest"), "{e}");
    }
}
