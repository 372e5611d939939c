//! A `docker save` tar read where it lies, for the commands that only walk an image's layers
//! (`kiln analyze`, `kiln diff`).
//!
//! [`crate::transport::open_image`] loads an archive into a temp layout first, which for a
//! docker archive means gzip-compressing every plain layer tar so the layout holds what a
//! registry would: most of the time of a one-off read. Here nothing is copied or compressed:
//! the tar's headers are indexed once, the chosen image's config is read and checked against
//! the digest in its name, and each layer is streamed from its offset in the archive, checked
//! against its diff_id as it is read ([`DockerArchive::layer_inputs`]).
//!
//! The image is described by an OCI manifest made from manifest.json whose layers are the
//! archive's own uncompressed tars (`…layer.v1.tar`, digest = diff_id, size = the tar's), so
//! its digest is the one the image would have if pushed uncompressed, not the digest
//! `kiln load` gives after compressing the layers.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::archive::{self, DockerManifestEntry, Loaded, Packing, TarIndex};
use crate::digest::Digest;
use crate::image::{Image, ImageConfig};
use crate::media;
use crate::reference::ImageRef;
use crate::store::{Descriptor, Manifest, canonical_json};
use crate::transport::TransportError;
use crate::walk::LayerInput;

/// One image of a `docker save` tar, opened in place. See the module docs.
#[derive(Debug)]
pub struct DockerArchive {
    path: PathBuf,
    /// The chosen image: its made-up manifest (uncompressed layers) and its config.
    pub image: Image,
    /// Each layer's tar: offset and size in the archive.
    layers: Vec<(u64, u64)>,
}

/// One manifest.json entry, described.
struct Candidate {
    loaded: Loaded,
    manifest: Manifest,
    config: Vec<u8>,
    layers: Vec<(u64, u64)>,
}

impl DockerArchive {
    /// Opens `r` in place when it is a `docker-archive:` reference to a plain docker archive.
    /// `None` for any other reference, and for archives that are better loaded: one that is
    /// also an OCI layout (Docker ≥ 25 writes both, and its OCI manifest digests are kept by
    /// loading) or whose layer files are compressed (their blob digests are unknown until
    /// hashed). Errors name the archive and entry, as loading does; a reference that matches
    /// no image, or none given for an archive of several, fails as in `open_image`.
    pub fn open(r: &ImageRef) -> Result<Option<DockerArchive>, TransportError> {
        let ImageRef::DockerArchive { path, reference } = r else {
            return Ok(None);
        };
        let tar = TarIndex::open(path)?;
        if (tar.has("oci-layout") && tar.has("index.json")) || !tar.has("manifest.json") {
            return Ok(None);
        }
        let bytes = tar.read_small("manifest.json", "the docker archive")?;
        let entries: Vec<DockerManifestEntry> = tar.json("manifest.json", &bytes)?;
        let mut candidates = Vec::with_capacity(entries.len());
        for entry in &entries {
            match candidate(&tar, entry)? {
                Some(c) => candidates.push(c),
                None => return Ok(None),
            }
        }
        let loaded: Vec<Loaded> = candidates.iter().map(|c| c.loaded.clone()).collect();
        let chosen = archive_pick(&loaded, reference.as_deref(), path, r)?;
        let c = candidates
            .into_iter()
            .find(|c| c.loaded.descriptor == chosen)
            .expect("the pick is a candidate");
        let config: ImageConfig = serde_json::from_slice(&c.config).map_err(|e| TransportError::Invalid {
            image: r.to_string(),
            what: format!("config {}", c.manifest.config.digest),
            reason: format!("malformed JSON: {e}"),
            hint: "the archive is damaged; save the image again",
        })?;
        Ok(Some(DockerArchive {
            path: path.clone(),
            image: Image {
                descriptor: c.loaded.descriptor,
                manifest: c.manifest,
                config,
            },
            layers: c.layers,
        }))
    }

    /// The archive file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The image's layers, base first, each streamed from the archive and failing its last
    /// read unless it hashes to its diff_id.
    pub fn layer_inputs(&self) -> Vec<LayerInput<'_>> {
        self.layers
            .iter()
            .zip(&self.image.manifest.layers)
            .map(|((offset, size), d)| LayerInput::archive_entry(&self.path, *offset, *size, &d.digest))
            .collect()
    }
}

fn archive_pick(
    loaded: &[Loaded],
    reference: Option<&str>,
    path: &Path,
    r: &ImageRef,
) -> Result<Descriptor, TransportError> {
    crate::transport::pick(loaded, reference, path, "docker-archive", r)
}

/// An entry's made-up manifest, config and layer positions; `None` when a layer file is
/// compressed.
fn candidate(tar: &TarIndex, entry: &DockerManifestEntry) -> Result<Option<Candidate>, TransportError> {
    let (config, config_digest, diff_ids) = archive::docker_config(tar, entry)?;
    let mut layers = Vec::with_capacity(diff_ids.len());
    let mut descriptors = Vec::with_capacity(diff_ids.len());
    for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
        let (offset, size) = tar.locate(path, "manifest.json")?;
        let mut head = BufReader::with_capacity(8, tar.section(offset, size.min(8)));
        let packing = archive::sniff(&mut head).map_err(|e| archive::ArchiveError::Corrupt {
            archive: tar.path.clone(),
            entry: path.clone(),
            reason: format!("cannot read the layer: {e}"),
        })?;
        if packing != Packing::Plain {
            return Ok(None);
        }
        layers.push((offset, size));
        descriptors.push(Descriptor::new(media::OCI_LAYER_TAR, diff_id, size));
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(media::OCI_CONFIG, config_digest, config.len() as u64),
        layers: descriptors,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let bytes = canonical_json(&manifest);
    let names = entry
        .repo_tags
        .iter()
        .flatten()
        .filter_map(|t| archive::store_name(t))
        .collect();
    Ok(Some(Candidate {
        loaded: Loaded {
            descriptor: Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(&bytes), bytes.len() as u64),
            names,
        },
        manifest,
        config,
        layers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Compression, LayerEntry, LayerWriter};
    use crate::store::Store;
    use crate::walk::walk_layers;

    /// A two-layer image saved as a docker archive, and the archive's path.
    fn saved(dir: &Path) -> (Store, Descriptor, PathBuf) {
        let store = Store::open(dir.join("store")).unwrap();
        let mut diff_ids = vec![];
        let mut layers = vec![];
        for (name, data) in [("a", &b"alpha"[..]), ("b", &b"beta"[..])] {
            let mut w = LayerWriter::new(&store, Compression::DEFAULT, Some(0)).unwrap();
            w.append(&LayerEntry::file_bytes(name, data.to_vec(), 0o644)).unwrap();
            let info = w.finish().unwrap();
            diff_ids.push(info.diff_id.clone());
            layers.push(info.descriptor.clone());
        }
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {"Env": ["A=1"]}
        });
        let cbytes = serde_json::to_vec(&config).unwrap();
        let cdigest = store.put_blob(&cbytes).unwrap();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(media::OCI_CONFIG, cdigest, cbytes.len() as u64),
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        };
        let mbytes = canonical_json(&manifest);
        let mdigest = store.put_blob(&mbytes).unwrap();
        let desc = Descriptor::new(media::OCI_MANIFEST, mdigest, mbytes.len() as u64);
        let out = dir.join("image.tar");
        archive::save_docker_archive(&store, &desc, &["app:1".into()], &out).unwrap();
        (store, desc, out)
    }

    #[test]
    fn layers_stream_from_the_archive_and_are_checked_against_their_diff_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _, path) = saved(dir.path());
        let r = ImageRef::DockerArchive {
            path: path.clone(),
            reference: None,
        };
        let a = DockerArchive::open(&r).unwrap().expect("a plain docker archive");
        assert_eq!(a.image.manifest.layers.len(), 2);
        assert_eq!(a.image.config.rootfs.diff_ids[1], a.image.manifest.layers[1].digest);
        assert_eq!(a.image.manifest.layers[0].media_type, media::OCI_LAYER_TAR);
        let walks = walk_layers(a.layer_inputs(), 2, |_| ()).unwrap();
        assert_eq!(walks[1].changes.len(), 1);

        // Named by its tag, or by nothing else.
        let named = ImageRef::DockerArchive {
            path: path.clone(),
            reference: Some("app:1".into()),
        };
        assert!(DockerArchive::open(&named).unwrap().is_some());
        let wrong = ImageRef::DockerArchive {
            path: path.clone(),
            reference: Some("app:2".into()),
        };
        assert!(DockerArchive::open(&wrong).unwrap_err().to_string().contains("app:1"));

        // Flip one byte of the second layer's file content: the walk refuses it.
        let bytes = std::fs::read(&path).unwrap();
        let (offset, size) = a.layers[1];
        let layer = &bytes[offset as usize..(offset + size) as usize];
        let at = offset as usize + layer.windows(4).position(|w| w == b"beta").expect("the file's bytes");
        let mut bad = bytes.clone();
        bad[at] = b'B';
        std::fs::write(&path, &bad).unwrap();
        let e = walk_layers(a.layer_inputs(), 2, |_| ()).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.to_string().contains("does not match its digest"), "{e}");
    }

    #[test]
    fn other_references_and_oci_archives_are_not_opened_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (store, desc, _) = saved(dir.path());
        let oci = dir.path().join("oci.tar");
        archive::save_oci_archive(&store, &desc, &["app:1".into()], &oci).unwrap();
        for r in [
            ImageRef::DockerArchive {
                path: oci,
                reference: None,
            },
            ImageRef::OciDir {
                path: dir.path().join("store"),
                reference: None,
            },
        ] {
            assert!(DockerArchive::open(&r).unwrap().is_none(), "{r}");
        }
    }
}
