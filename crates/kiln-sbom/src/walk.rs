//! Reading an image's final filesystem from its layer tars without unpacking them.
//!
//! Each layer is decoded on its own thread into a list of events (a kept file, a whiteout,
//! an opaque directory); the lists are then applied base first, so the result is exactly
//! what a container would see. Only files a cataloger wants are kept: small metadata files
//! as bytes, and binaries and archives already parsed into packages while they stream past,
//! so memory stays near the size of the largest binary, not of the image.

use std::collections::BTreeMap;
use std::io::Read;

use kiln_oci::Store;
use kiln_oci::decompress::open_layer_stream_for_media_type;
use kiln_oci::store::Descriptor;

use crate::{Options, Package, SbomError};

/// What is kept of one file.
#[derive(Debug, Clone)]
pub enum Content {
    /// A metadata file's bytes.
    Raw(Vec<u8>),
    /// A binary or archive, already catalogued (packages, warnings).
    Found(Vec<Package>, Vec<String>),
}

/// A kept file and the layer (index) it came from.
#[derive(Debug, Clone)]
pub struct File {
    /// Index of the layer in the manifest.
    pub layer: usize,
    /// The content.
    pub content: Content,
}

/// The final filesystem, reduced to what catalogers read.
#[derive(Debug, Default)]
pub struct Fs {
    /// Absolute path → file.
    pub files: BTreeMap<String, File>,
    /// Problems met while reading (files too large, unreadable entries).
    pub warnings: Vec<String>,
}

impl Fs {
    /// The bytes of a kept metadata file.
    pub fn raw(&self, path: &str) -> Option<(&[u8], usize)> {
        match self.files.get(path) {
            Some(File {
                content: Content::Raw(b),
                layer,
            }) => Some((b, *layer)),
            _ => None,
        }
    }

    /// Every kept metadata file whose path satisfies `f`.
    pub fn raw_matching<'a>(
        &'a self,
        f: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a str, &'a [u8], usize)> + 'a {
        self.files.iter().filter_map(move |(p, file)| match &file.content {
            Content::Raw(b) if f(p) => Some((p.as_str(), b.as_slice(), file.layer)),
            _ => None,
        })
    }
}

enum Event {
    Put(String, Content),
    Whiteout(String),
    Opaque(String),
}

/// What a path is to the catalogers.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    /// Keep the bytes (metadata).
    Raw,
    /// Parse as a Java archive.
    Archive,
    /// Look inside if it is an ELF binary.
    MaybeBinary,
    /// Not needed.
    No,
}

fn want(path: &str, mode: u32) -> Want {
    let name = path.rsplit('/').next().unwrap_or(path);
    let raw = matches!(
        path,
        "/etc/os-release" | "/usr/lib/os-release" | "/var/lib/dpkg/status" | "/lib/apk/db/installed"
    ) || path.starts_with("/var/lib/dpkg/status.d/")
        || (path.starts_with("/var/lib/dpkg/info/") && name.ends_with(".list"))
        || (path.contains(".dist-info/") && matches!(name, "METADATA" | "RECORD"))
        || (path.contains(".egg-info/") && name == "PKG-INFO")
        || name.ends_with(".egg-info")
        || name == "package.json"
        || (name == "package-lock.json" && !path.contains("/node_modules/"))
        || name == "Cargo.lock";
    if raw {
        return Want::Raw;
    }
    if crate::java::is_archive_name(name) {
        return Want::Archive;
    }
    if mode & 0o111 != 0 {
        return Want::MaybeBinary;
    }
    Want::No
}

use kiln_oci::layer::absolute_entry_path as normalize;

fn layer_events(layout: &Store, desc: &Descriptor, opts: &Options) -> Result<(Vec<Event>, Vec<String>), SbomError> {
    let err = |reason: String| SbomError::Layer {
        digest: desc.digest.clone(),
        reason,
    };
    let blob = layout.open_blob(&desc.digest).map_err(|e| err(e.to_string()))?;
    let stream = open_layer_stream_for_media_type(blob, &desc.media_type).map_err(|e| err(e.to_string()))?;
    let mut archive = tar::Archive::new(stream);
    let mut events = Vec::new();
    let mut warnings = Vec::new();
    // Hard links point at earlier entries of the same layer; keep what we kept for them.
    let mut kept: BTreeMap<String, Content> = BTreeMap::new();
    for entry in archive.entries().map_err(|e| err(e.to_string()))? {
        let mut entry = entry.map_err(|e| err(format!("reading the tar: {e}")))?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalize(&raw_path);
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (if d.is_empty() { "/" } else { d }, n),
            None => ("/", path.as_str()),
        };
        if name == ".wh..wh..opq" {
            events.push(Event::Opaque(dir.to_string()));
            continue;
        }
        if let Some(gone) = name.strip_prefix(".wh.") {
            let target = if dir == "/" {
                format!("/{gone}")
            } else {
                format!("{dir}/{gone}")
            };
            events.push(Event::Whiteout(target));
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            let target = entry.link_name_bytes().map(|l| normalize(&String::from_utf8_lossy(&l)));
            if let Some(c) = target.and_then(|t| kept.get(&t)) {
                events.push(Event::Put(path, c.clone()));
            } else {
                // Whatever was at this path before is replaced.
                events.push(Event::Whiteout(path));
            }
            continue;
        }
        if !kind.is_file() {
            if !kind.is_dir() {
                // A symlink or device over a file hides it.
                events.push(Event::Whiteout(path));
            }
            continue;
        }
        let mode = entry.header().mode().unwrap_or(0);
        let size = entry.size();
        let w = want(&path, mode);
        let content = match w {
            Want::No => None,
            Want::Raw => {
                if size > 64 << 20 {
                    warnings.push(format!(
                        "{path}: metadata file of {size} bytes is too large to read; skipped"
                    ));
                    None
                } else {
                    let mut b = Vec::with_capacity(size as usize);
                    entry
                        .read_to_end(&mut b)
                        .map_err(|e| err(format!("reading {path}: {e}")))?;
                    Some(Content::Raw(b))
                }
            }
            Want::Archive | Want::MaybeBinary => {
                if size > opts.max_binary_size {
                    if w == Want::Archive {
                        warnings.push(format!(
                            "{path}: {size} bytes is over the {} byte limit for archives; skipped",
                            opts.max_binary_size
                        ));
                    }
                    None
                } else {
                    let mut head = [0u8; 4];
                    let mut got = 0;
                    while got < 4 {
                        let n = entry
                            .read(&mut head[got..])
                            .map_err(|e| err(format!("reading {path}: {e}")))?;
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    let is_elf = got == 4 && head == *b"\x7fELF";
                    let is_zip = got == 4 && head == *b"PK\x03\x04";
                    if (w == Want::MaybeBinary && is_elf) || (w == Want::Archive && is_zip) {
                        let mut b = Vec::with_capacity(size as usize);
                        b.extend_from_slice(&head[..got]);
                        entry
                            .read_to_end(&mut b)
                            .map_err(|e| err(format!("reading {path}: {e}")))?;
                        let (pkgs, warns) = if is_elf {
                            crate::binary::catalog(&path, &b)
                        } else {
                            crate::java::catalog(&path, &b)
                        };
                        (!pkgs.is_empty() || !warns.is_empty()).then_some(Content::Found(pkgs, warns))
                    } else {
                        None
                    }
                }
            }
        };
        match content {
            Some(c) => {
                kept.insert(path.clone(), c.clone());
                events.push(Event::Put(path, c));
            }
            // A file we do not keep still replaces one we kept from a lower layer.
            None => events.push(Event::Whiteout(path)),
        }
    }
    Ok((events, warnings))
}

/// One layer's events and warnings.
type LayerResult = Result<(Vec<Event>, Vec<String>), SbomError>;

/// Reads `layers` (base first) into the final filesystem. Layers decode on up to
/// `opts.jobs` threads; their events are applied in order afterwards, so the result does
/// not depend on which thread finished first.
pub fn read_layers(layout: &Store, layers: &[Descriptor], opts: &Options) -> Result<Fs, SbomError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<LayerResult>>> =
        (0..layers.len()).map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1).min(layers.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= layers.len() {
                        break;
                    }
                    let r = layer_events(layout, &layers[i], opts);
                    *slots[i].lock().unwrap() = Some(r);
                }
            });
        }
    });
    let results = slots.into_iter().map(|s| s.into_inner().unwrap());
    let mut fs = Fs::default();
    for (i, r) in results.into_iter().enumerate() {
        let (events, warnings) = r.expect("every layer was read")?;
        fs.warnings.extend(warnings);
        for ev in events {
            match ev {
                Event::Put(p, c) => {
                    remove_under(&mut fs.files, &p, None);
                    fs.files.insert(p, File { layer: i, content: c });
                }
                Event::Whiteout(p) => {
                    fs.files.remove(&p);
                    remove_under(&mut fs.files, &p, None);
                }
                Event::Opaque(d) => remove_under(&mut fs.files, &d, Some(i)),
            }
        }
    }
    Ok(fs)
}

/// Removes every kept file under directory `dir` (only those from layers below `below`).
fn remove_under(files: &mut BTreeMap<String, File>, dir: &str, below: Option<usize>) {
    let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
    let doomed: Vec<String> = files
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, f)| below.is_none_or(|b| f.layer < b))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        files.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize("./var/lib/dpkg/status"), "/var/lib/dpkg/status");
        assert_eq!(normalize("usr//lib/"), "/usr/lib");
        assert_eq!(normalize("./"), "/");
    }

    #[test]
    fn wanted_files() {
        assert_eq!(want("/var/lib/dpkg/status", 0o644), Want::Raw);
        assert_eq!(want("/app/node_modules/a/package.json", 0o644), Want::Raw);
        assert_eq!(
            want("/usr/lib/python3/dist-packages/x-1.dist-info/METADATA", 0o644),
            Want::Raw
        );
        assert_eq!(want("/app/x.jar", 0o644), Want::Archive);
        assert_eq!(want("/usr/bin/x", 0o755), Want::MaybeBinary);
        assert_eq!(want("/etc/passwd", 0o644), Want::No);
    }
}
