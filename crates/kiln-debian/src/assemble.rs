//! From a lock to an image index: one layer per package, then one layer of accounts and
//! spec files, one manifest per architecture.
//!
//! **Layer rule** (what makes layers shared between images): each package is a layer of its
//! own, holding exactly its `data.tar` files, its dpkg record under
//! `/var/lib/dpkg/status.d/`, and what its maintainer scripts would have made that depends on
//! that package alone (see [`derived_files`]). So a package at a given version gives the
//! same layer bytes in every image that installs it (for the same compression and
//! SOURCE_DATE_EPOCH). Layers are ordered by dependency depth (libraries first), then by
//! name, so images that share their base libraries also share their first layers. A last
//! layer carries /etc/passwd, /etc/group, /etc/nsswitch.conf, /tmp, home directories and the
//! spec's `files`. Past [`MAX_PACKAGE_LAYERS`] packages, the rest share one layer.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use kiln_oci::image::{History, ImageConfig, RootFs, RunConfig, rfc3339, write_image};
use kiln_oci::layer::{Compression, EntryKind, FileSource, LayerEntry, LayerInfo, LayerWriter};
use kiln_oci::{Descriptor, Digest, Index, Platform, Store, canonical_json, media};
use serde::{Deserialize, Serialize};

use crate::deb::{self, DebKind};
use crate::error::Error;
use crate::fetch;
use crate::lock::{Lock, LockedPackage};
use crate::spec::Spec;

/// Images rarely need more; runtimes and registries limit layer counts (about 127).
pub const MAX_PACKAGE_LAYERS: usize = 100;

/// Bumped when the layer contents for the same .deb change.
const LAYER_FORMAT: u32 = 1;

/// Build settings.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Directory `files.src` paths are relative to (the kiln.toml's directory).
    pub spec_dir: PathBuf,
    /// Layer compression.
    pub compression: Compression,
    /// Clamp for every mtime and the config's `created`.
    pub source_date_epoch: i64,
    /// Rebuild package layers even when cached.
    pub no_cache: bool,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image index (tag this).
    pub index: Descriptor,
    /// Per architecture: the manifest.
    pub manifests: Vec<(String, Descriptor)>,
    /// Package layers taken from the layer cache.
    pub layers_cached: usize,
    /// Package layers written.
    pub layers_built: usize,
    /// .debs downloaded.
    pub downloaded: usize,
}

/// The OCI platform for a Debian architecture.
pub fn platform(arch: &str) -> Platform {
    let (a, v) = match arch {
        "amd64" => ("amd64", None),
        "arm64" => ("arm64", Some("v8")),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v5")),
        "i386" => ("386", None),
        "ppc64el" => ("ppc64le", None),
        "mips64el" => ("mips64le", None),
        other => (other, None),
    };
    Platform {
        architecture: a.into(),
        os: "linux".into(),
        variant: v.map(Into::into),
    }
}

/// Builds every architecture of the lock into the store and writes the index. Nothing is
/// tagged here: the caller tags `index` once everything succeeded.
pub fn build(
    store: &Store,
    spec: &Spec,
    lock: &Lock,
    opts: &BuildOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Built, Error> {
    let _lease = store.lease()?;
    let cache = crate::repo::cache_dir(&store.meta_dir());
    let mut manifests = Vec::new();
    let (mut cached, mut built, mut downloaded) = (0, 0, 0);
    for arch in &spec.architectures {
        let pkgs: Vec<&LockedPackage> = lock.for_arch(arch).collect();
        downloaded += fetch::prefetch(&cache, &pkgs, progress)?;
        let ordered = layer_order(&pkgs);
        let mut layers: Vec<(LayerInfo, String)> = Vec::new();
        let (solo, rest) = ordered.split_at(ordered.len().min(MAX_PACKAGE_LAYERS));
        let mut groups: Vec<Vec<&LockedPackage>> = solo.iter().map(|p| vec![*p]).collect();
        if !rest.is_empty() {
            groups.push(rest.to_vec());
        }
        for group in groups {
            let (info, hit) = package_layer(store, &cache, &group, opts)?;
            if hit {
                cached += 1;
            } else {
                built += 1;
                progress(&format!(
                    "layer {} ({arch}): {}",
                    info.descriptor.digest,
                    group.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            let what = group
                .iter()
                .map(|p| format!("{} {}", p.name, p.version))
                .collect::<Vec<_>>()
                .join(", ");
            layers.push((info, format!("kiln.toml: deb {what}")));
        }
        let final_layer = config_layer(store, spec, opts)?;
        layers.push((final_layer, "kiln.toml: accounts, files".into()));
        let desc = write_arch_image(store, spec, arch, &layers, opts)?;
        manifests.push((arch.clone(), desc));
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: manifests
            .iter()
            .map(|(arch, d)| {
                let mut d = d.clone();
                d.platform = Some(platform(arch));
                d
            })
            .collect(),
        annotations: BTreeMap::new(),
    };
    let bytes = canonical_json(&index);
    let digest = store.put_blob(&bytes)?;
    Ok(Built {
        index: Descriptor::new(media::OCI_INDEX, digest, bytes.len() as u64),
        manifests,
        layers_cached: cached,
        layers_built: built,
        downloaded,
    })
}

/// Orders packages by dependency depth (a package with no locked dependencies has depth
/// 0), then name. Cycles (libc6 ↔ libgcc-s1) are cut where they are met.
pub fn layer_order<'a>(pkgs: &[&'a LockedPackage]) -> Vec<&'a LockedPackage> {
    let by_name: HashMap<&str, &LockedPackage> = pkgs.iter().map(|p| (p.name.as_str(), *p)).collect();
    fn depth<'a>(
        name: &'a str,
        by_name: &HashMap<&'a str, &'a LockedPackage>,
        memo: &mut HashMap<&'a str, usize>,
        visiting: &mut Vec<&'a str>,
    ) -> usize {
        if let Some(d) = memo.get(name) {
            return *d;
        }
        if visiting.contains(&name) {
            return 0;
        }
        visiting.push(name);
        let mut d = 0;
        if let Some(p) = by_name.get(name) {
            for dep in &p.depends {
                if by_name.contains_key(dep.as_str()) {
                    d = d.max(1 + depth(dep.as_str(), by_name, memo, visiting));
                }
            }
        }
        visiting.pop();
        memo.insert(name, d);
        d
    }
    let mut memo = HashMap::new();
    // Visit in name order so a cycle is always cut at the same place.
    let mut sorted = pkgs.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let pkgs = &sorted;
    let mut keyed: Vec<(usize, &str, &LockedPackage)> = pkgs
        .iter()
        .map(|p| {
            (
                depth(p.name.as_str(), &by_name, &mut memo, &mut Vec::new()),
                p.name.as_str(),
                *p,
            )
        })
        .collect();
    keyed.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    keyed.into_iter().map(|(_, _, p)| p).collect()
}

#[derive(Serialize, Deserialize)]
struct CachedLayer {
    diff_id: Digest,
    descriptor: Descriptor,
    tar_size: u64,
}

fn compression_name(c: Compression) -> String {
    format!("{c:?}")
}

/// The layer for a group of packages: from the layer cache when this exact input was built
/// before and its blob is still in the store.
fn package_layer(
    store: &Store,
    cache: &Path,
    group: &[&LockedPackage],
    opts: &BuildOptions,
) -> Result<(LayerInfo, bool), Error> {
    let mut key_src = format!(
        "kiln-debian-layer/{LAYER_FORMAT}\n{}\n{}\n",
        compression_name(opts.compression),
        opts.source_date_epoch
    );
    for p in group {
        key_src.push_str(&format!("{} {}\n", p.name, p.sha256));
    }
    let key = Digest::sha256_of(key_src.as_bytes());
    let record = cache.join("layers").join(format!("{}.json", key.hex()));
    if !opts.no_cache
        && let Ok(bytes) = std::fs::read(&record)
        && let Ok(c) = serde_json::from_slice::<CachedLayer>(&bytes)
        && store.has_blob(&c.descriptor.digest)
    {
        return Ok((
            LayerInfo {
                diff_id: c.diff_id,
                descriptor: c.descriptor,
                tar_size: c.tar_size,
            },
            true,
        ));
    }
    let mut entries: BTreeMap<String, LayerEntry> = BTreeMap::new();
    for p in group {
        let bytes = fetch::get(cache, p)?;
        let label = format!("{}_{}_{}.deb", p.name, p.version, p.package_arch);
        let d = deb::read(&label, &bytes)?;
        add_package(&mut entries, p, &d, opts.source_date_epoch);
    }
    let info = write_layer(store, entries, opts)?;
    let c = CachedLayer {
        diff_id: info.diff_id.clone(),
        descriptor: info.descriptor.clone(),
        tar_size: info.tar_size,
    };
    let dir = record.parent().expect("parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    kiln_oci::store::atomic_write(dir, &record, &serde_json::to_vec(&c).expect("json")).map_err(Error::Store)?;
    Ok((info, false))
}

fn write_layer(store: &Store, entries: BTreeMap<String, LayerEntry>, opts: &BuildOptions) -> Result<LayerInfo, Error> {
    let mut w = LayerWriter::new(store, opts.compression, Some(opts.source_date_epoch))?;
    for e in entries.values() {
        w.append(e)?;
    }
    Ok(w.finish()?)
}

fn entry(path: &str, kind: EntryKind, mode: u32, uid: u64, gid: u64, mtime: i64) -> LayerEntry {
    LayerEntry {
        path: path.to_string(),
        kind,
        mode,
        uid,
        gid,
        mtime,
        xattrs: vec![],
    }
}

fn bytes_entry(path: &str, data: Vec<u8>, mode: u32, mtime: i64) -> LayerEntry {
    let size = data.len() as u64;
    entry(
        path,
        EntryKind::File {
            source: FileSource::Bytes(data),
            size,
        },
        mode,
        0,
        0,
        mtime,
    )
}

/// Adds missing parent directories of `path` (root-owned, 0755).
fn add_parents(entries: &mut BTreeMap<String, LayerEntry>, path: &str, mtime: i64) {
    let mut cur = String::new();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(part);
        entries
            .entry(cur.clone())
            .or_insert_with(|| entry(&cur, EntryKind::Dir, 0o755, 0, 0, mtime));
    }
}

fn add_package(entries: &mut BTreeMap<String, LayerEntry>, p: &LockedPackage, d: &deb::Deb, sde: i64) {
    // Generated entries take the package's own newest mtime (clamped to SOURCE_DATE_EPOCH on
    // write), so a package layer does not change with every commit of the spec's repository.
    let sde = d.entries.iter().map(|e| e.mtime).max().unwrap_or(0).min(sde);
    let files: HashMap<&str, &[u8]> = d
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            DebKind::File(b) => Some((e.path.as_str(), b.as_slice())),
            _ => None,
        })
        .collect();
    for e in &d.entries {
        let kind = match &e.kind {
            DebKind::Dir => {
                if entries.contains_key(&e.path) {
                    continue;
                }
                EntryKind::Dir
            }
            DebKind::File(b) => EntryKind::File {
                size: b.len() as u64,
                source: FileSource::Bytes(b.clone()),
            },
            DebKind::Symlink(t) => EntryKind::Symlink(t.clone()),
            // The layer is written in sorted order, so a link may only point back; otherwise
            // store a copy (same bytes, no ordering constraint).
            DebKind::Hardlink(t) => match files.get(t.as_str()) {
                Some(_) if t.as_str() < e.path.as_str() => EntryKind::Hardlink(t.clone()),
                Some(b) => EntryKind::File {
                    size: b.len() as u64,
                    source: FileSource::Bytes(b.to_vec()),
                },
                None => continue,
            },
        };
        add_parents(entries, &e.path, e.mtime);
        entries.insert(e.path.clone(), entry(&e.path, kind, e.mode, e.uid, e.gid, e.mtime));
    }
    // The dpkg record, where distroless images keep it and syft and trivy look.
    let mut record = String::new();
    for line in d.control.lines() {
        record.push_str(line);
        record.push('\n');
        if line.starts_with("Package:") {
            record.push_str("Status: install ok installed\n");
        }
    }
    let dir = "var/lib/dpkg/status.d";
    let path = format!("{dir}/{}", p.name);
    add_parents(entries, &path, sde);
    entries.insert(dir.into(), entry(dir, EntryKind::Dir, 0o755, 0, 0, sde));
    entries.insert(path.clone(), bytes_entry(&path, record.into_bytes(), 0o644, sde));
    if let Some(m) = &d.md5sums {
        let path = format!("{dir}/{}.md5sums", p.name);
        entries.insert(path.clone(), bytes_entry(&path, m.clone().into_bytes(), 0o644, sde));
    }
    for e in derived_files(&p.name, d, sde) {
        add_parents(entries, &e.path, sde);
        entries.insert(e.path.clone(), e);
    }
}

/// What a package's maintainer scripts would have produced that a runtime image needs, and
/// that depends on that package alone (documented in docs/kiln-toml.md):
/// - ca-certificates: `/etc/ssl/certs/ca-certificates.crt`, the bundle `update-ca-certificates`
///   writes: every `/usr/share/ca-certificates/**.crt`, in path order, each ending in a newline;
/// - tzdata: `/etc/localtime` → `/usr/share/zoneinfo/Etc/UTC` and `/etc/timezone` (`Etc/UTC`).
pub fn derived_files(name: &str, d: &deb::Deb, sde: i64) -> Vec<LayerEntry> {
    match name {
        "ca-certificates" => {
            let mut certs: Vec<(&str, &[u8])> = d
                .entries
                .iter()
                .filter_map(|e| match &e.kind {
                    DebKind::File(b)
                        if e.path.starts_with("usr/share/ca-certificates/") && e.path.ends_with(".crt") =>
                    {
                        Some((e.path.as_str(), b.as_slice()))
                    }
                    _ => None,
                })
                .collect();
            certs.sort();
            let mut bundle = Vec::new();
            for (_, b) in certs {
                bundle.extend_from_slice(b);
                if !bundle.ends_with(b"\n") {
                    bundle.push(b'\n');
                }
            }
            vec![bytes_entry("etc/ssl/certs/ca-certificates.crt", bundle, 0o644, sde)]
        }
        "tzdata" => vec![
            entry(
                "etc/localtime",
                EntryKind::Symlink("/usr/share/zoneinfo/Etc/UTC".into()),
                0o777,
                0,
                0,
                sde,
            ),
            bytes_entry("etc/timezone", b"Etc/UTC\n".to_vec(), 0o644, sde),
        ],
        _ => vec![],
    }
}

/// /etc/passwd and /etc/group text for the spec's accounts.
pub fn passwd_group(spec: &Spec) -> (String, String) {
    let users = spec.users();
    let mut passwd = String::from("root:x:0:0:root:/root:/sbin/nologin\n");
    let mut group = String::from("root:x:0:\n");
    let mut groups: Vec<(String, u32, Vec<String>)> = spec
        .accounts
        .groups
        .iter()
        .map(|g| (g.name.clone(), g.gid, g.members.clone()))
        .collect();
    for u in &users {
        let gid = u.gid.unwrap_or(u.uid);
        let home = u.home.clone().unwrap_or_else(|| format!("/home/{}", u.name));
        let shell = u.shell.clone().unwrap_or_else(|| "/sbin/nologin".into());
        passwd.push_str(&format!("{}:x:{}:{gid}:{}:{home}:{shell}\n", u.name, u.uid, u.name));
        if !groups.iter().any(|g| g.1 == gid) {
            groups.push((u.name.clone(), gid, vec![]));
        }
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n");
    for (name, gid, members) in &groups {
        group.push_str(&format!("{name}:x:{gid}:{}\n", members.join(",")));
    }
    group.push_str("nogroup:x:65534:\n");
    (passwd, group)
}

/// The last layer: accounts, nsswitch.conf, /tmp, homes and the spec's files.
fn config_layer(store: &Store, spec: &Spec, opts: &BuildOptions) -> Result<LayerInfo, Error> {
    let sde = opts.source_date_epoch;
    let mut entries: BTreeMap<String, LayerEntry> = BTreeMap::new();
    let (passwd, group) = passwd_group(spec);
    entries.insert("etc".into(), entry("etc", EntryKind::Dir, 0o755, 0, 0, sde));
    entries.insert(
        "etc/passwd".into(),
        bytes_entry("etc/passwd", passwd.into_bytes(), 0o644, sde),
    );
    entries.insert(
        "etc/group".into(),
        bytes_entry("etc/group", group.into_bytes(), 0o644, sde),
    );
    let nss = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n";
    entries.insert(
        "etc/nsswitch.conf".into(),
        bytes_entry("etc/nsswitch.conf", nss.as_bytes().to_vec(), 0o644, sde),
    );
    entries.insert("tmp".into(), entry("tmp", EntryKind::Dir, 0o1777, 0, 0, sde));
    entries.insert("root".into(), entry("root", EntryKind::Dir, 0o700, 0, 0, sde));
    for u in spec.users() {
        let home = u.home.clone().unwrap_or_else(|| format!("/home/{}", u.name));
        let rel = home.trim_start_matches('/').to_string();
        if rel.is_empty() || rel == "nonexistent" {
            continue;
        }
        add_parents(&mut entries, &rel, sde);
        let gid = u.gid.unwrap_or(u.uid);
        entries.insert(
            rel.clone(),
            entry(&rel, EntryKind::Dir, 0o700, u.uid.into(), gid.into(), sde),
        );
    }
    for f in &spec.files {
        let rel = f.path.trim_start_matches('/').trim_end_matches('/').to_string();
        let kind = if let Some(src) = &f.src {
            let p = opts.spec_dir.join(src);
            let meta = std::fs::metadata(&p).map_err(|e| Error::Input {
                message: format!("files: {}: {e}", p.display()),
                hint: "src is relative to the kiln.toml's directory".into(),
            })?;
            if !meta.is_file() {
                return Err(Error::Input {
                    message: format!("files: {} is not a regular file", p.display()),
                    hint: "list each file, and make directories with an entry without src".into(),
                });
            }
            EntryKind::File {
                source: FileSource::Path(p),
                size: meta.len(),
            }
        } else if let Some(t) = &f.symlink {
            EntryKind::Symlink(t.clone())
        } else {
            EntryKind::Dir
        };
        let mode = f.mode.unwrap_or(match kind {
            EntryKind::Dir => 0o755,
            EntryKind::Symlink(_) => 0o777,
            _ => 0o644,
        });
        add_parents(&mut entries, &rel, sde);
        entries.insert(rel.clone(), entry(&rel, kind, mode, f.uid.into(), f.gid.into(), sde));
    }
    write_layer(store, entries, opts)
}

fn write_arch_image(
    store: &Store,
    spec: &Spec,
    arch: &str,
    layers: &[(LayerInfo, String)],
    opts: &BuildOptions,
) -> Result<Descriptor, Error> {
    let created = rfc3339(opts.source_date_epoch);
    let plat = platform(arch);
    let user = match spec.run_as() {
        "root" => "0".to_string(),
        name => {
            let u = spec
                .users()
                .into_iter()
                .find(|u| u.name == name)
                .expect("checked by Spec::parse");
            format!("{}:{}", u.uid, u.gid.unwrap_or(u.uid))
        }
    };
    let mut env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
    for (k, v) in &spec.image.env {
        if k == "PATH" {
            env[0] = format!("PATH={v}");
        } else {
            env.push(format!("{k}={v}"));
        }
    }
    let img = &spec.image;
    let config = ImageConfig {
        created: Some(created.clone()),
        architecture: plat.architecture.clone(),
        os: plat.os.clone(),
        variant: plat.variant.clone(),
        config: RunConfig {
            user: Some(user),
            env: Some(env),
            entrypoint: img.entrypoint.clone(),
            cmd: img.cmd.clone(),
            working_dir: img.workdir.clone(),
            labels: (!img.labels.is_empty()).then(|| img.labels.clone()),
            stop_signal: img.stop_signal.clone(),
            ..Default::default()
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|(l, _)| l.diff_id.clone()).collect(),
        },
        history: layers
            .iter()
            .map(|(_, what)| History {
                created: Some(created.clone()),
                created_by: Some(what.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let descs: Vec<Descriptor> = layers.iter().map(|(l, _)| l.descriptor.clone()).collect();
    Ok(write_image(store, &config, &descs, BTreeMap::new())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(name: &str, deps: &[&str]) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: "1".into(),
            arch: "amd64".into(),
            package_arch: "amd64".into(),
            source: name.into(),
            source_version: "1".into(),
            url: "http://x".into(),
            path: "p".into(),
            size: 0,
            sha256: String::new(),
            depends: deps.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn order_is_libraries_first_and_survives_cycles() {
        let pkgs = [
            locked("python3", &["libpython", "libc6"]),
            locked("libpython", &["libc6", "zlib"]),
            locked("zlib", &["libc6"]),
            locked("libc6", &["libgcc"]),
            locked("libgcc", &["libc6"]),
            locked("tzdata", &[]),
        ];
        let refs: Vec<&LockedPackage> = pkgs.iter().collect();
        let names: Vec<&str> = layer_order(&refs).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["tzdata", "libgcc", "libc6", "zlib", "libpython", "python3"]);
    }

    #[test]
    fn accounts() {
        let spec = Spec::parse("k", "architectures = [\"amd64\"]\npackages = [\"a\"]\n[[source]]\nsuites = [\"s\"]\n[[accounts.groups]]\nname = \"app\"\ngid = 1000\nmembers = [\"nonroot\"]\n").unwrap();
        let (p, g) = passwd_group(&spec);
        assert!(
            p.contains("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
            "{p}"
        );
        assert!(
            g.contains("app:x:1000:nonroot\n") && g.contains("nonroot:x:65532:\n"),
            "{g}"
        );
    }
}
