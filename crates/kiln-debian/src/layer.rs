//! What the layers of a kiln.toml image hold: one layer per package, then one layer of
//! accounts and spec files. The kiln.toml frontend (kiln-build) puts these into a plan; the
//! solver writes them, through its one cache, like any other step.
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
use std::path::Path;

use kiln_oci::layer::{EntryKind, FileSource, LayerEntry};
use kiln_plan::lock::LockedPackage;
use kiln_plan::plan::{FileEntry, FileKind};

use crate::deb::{self, DebKind};
use crate::error::Error;
use crate::fetch;
use crate::spec::Spec;

/// Images rarely need more; runtimes and registries limit layer counts (about 127).
pub const MAX_PACKAGE_LAYERS: usize = 100;

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

/// The parent directories of a relative path, outermost first (`a/b/c` → `a`, `a/b`).
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Adds missing parent directories of `path` (root-owned, 0755).
fn add_parents(entries: &mut BTreeMap<String, LayerEntry>, path: &str, mtime: i64) {
    for dir in parents(path) {
        entries
            .entry(dir.to_string())
            .or_insert_with(|| entry(dir, EntryKind::Dir, 0o755, 0, 0, mtime));
    }
}

/// Adds one package's entries: its files, its dpkg record under `var/lib/dpkg/status.d/`
/// and its [`derived_files`].
pub fn add_package(entries: &mut BTreeMap<String, LayerEntry>, p: &LockedPackage, d: &deb::Deb, sde: i64) {
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

/// The entries of the last layer: accounts, nsswitch.conf, /tmp, homes and the spec's
/// `files`, sorted by path. A `files` entry with `src` names a file relative to `spec_dir`,
/// which must be a regular file (its content is read when the layer is written).
pub fn accounts_layer(spec: &Spec, spec_dir: &Path) -> Result<Vec<FileEntry>, Error> {
    let mut entries: BTreeMap<String, FileEntry> = BTreeMap::new();
    let text = |s: String| FileKind::File { content: s };
    let (passwd, group) = passwd_group(spec);
    put(&mut entries, "etc", FileKind::Dir, 0o755, 0, 0);
    put(&mut entries, "etc/passwd", text(passwd), 0o644, 0, 0);
    put(&mut entries, "etc/group", text(group), 0o644, 0, 0);
    let nss = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n";
    put(&mut entries, "etc/nsswitch.conf", text(nss.into()), 0o644, 0, 0);
    put(&mut entries, "tmp", FileKind::Dir, 0o1777, 0, 0);
    put(&mut entries, "root", FileKind::Dir, 0o700, 0, 0);
    for u in spec.users() {
        let home = u.home.clone().unwrap_or_else(|| format!("/home/{}", u.name));
        let rel = home.trim_start_matches('/').to_string();
        if rel.is_empty() || rel == "nonexistent" {
            continue;
        }
        add_parent_dirs(&mut entries, &rel);
        put(&mut entries, &rel, FileKind::Dir, 0o700, u.uid, u.gid.unwrap_or(u.uid));
    }
    for f in &spec.files {
        let rel = f.path.trim_start_matches('/').trim_end_matches('/').to_string();
        let kind = if let Some(src) = &f.src {
            let p = spec_dir.join(src);
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
            FileKind::Context { src: src.clone() }
        } else if let Some(t) = &f.symlink {
            FileKind::Symlink { target: t.clone() }
        } else {
            FileKind::Dir
        };
        let mode = f.mode.unwrap_or(match kind {
            FileKind::Dir => 0o755,
            FileKind::Symlink { .. } => 0o777,
            _ => 0o644,
        });
        add_parent_dirs(&mut entries, &rel);
        put(&mut entries, &rel, kind, mode, f.uid, f.gid);
    }
    Ok(entries.into_values().collect())
}

fn put(entries: &mut BTreeMap<String, FileEntry>, path: &str, kind: FileKind, mode: u32, uid: u32, gid: u32) {
    let e = FileEntry {
        path: path.to_string(),
        kind,
        mode,
        uid,
        gid,
    };
    entries.insert(path.to_string(), e);
}

/// Adds missing parent directories of `path` (root-owned, 0755).
fn add_parent_dirs(entries: &mut BTreeMap<String, FileEntry>, path: &str) {
    for dir in parents(path) {
        if !entries.contains_key(dir) {
            put(entries, dir, FileKind::Dir, 0o755, 0, 0);
        }
    }
}

/// A group of packages' layer entries (sorted by path), each .deb taken from the
/// content-addressed cache (downloaded on a miss, checked against its sha256).
pub fn package_layer(cache: &Path, group: &[LockedPackage], sde: i64) -> Result<Vec<LayerEntry>, Error> {
    let mut entries: BTreeMap<String, LayerEntry> = BTreeMap::new();
    for p in group {
        let bytes = fetch::get(cache, p)?;
        let label = format!("{}_{}_{}.deb", p.name, p.version, p.package_arch);
        let d = deb::read(&label, &bytes)?;
        add_package(&mut entries, p, &d, sde);
    }
    Ok(entries.into_values().collect())
}

/// The packages of one architecture split into layers: one each, in [`layer_order`], and
/// past [`MAX_PACKAGE_LAYERS`] the rest together.
pub fn layer_groups<'a>(pkgs: &[&'a LockedPackage]) -> Vec<Vec<&'a LockedPackage>> {
    let ordered = layer_order(pkgs);
    let (solo, rest) = ordered.split_at(ordered.len().min(MAX_PACKAGE_LAYERS));
    let mut groups: Vec<Vec<&LockedPackage>> = solo.iter().map(|p| vec![*p]).collect();
    if !rest.is_empty() {
        groups.push(rest.to_vec());
    }
    groups
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
