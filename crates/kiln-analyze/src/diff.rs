//! `kiln diff`: the release report between two images: config, files, packages,
//! vulnerabilities and shared layers. The JSON model is documented in docs/diff.md (schema
//! `kiln-diff/v1`), so a pipeline can gate on it.

use std::collections::BTreeMap;

use kiln_oci::image::{Image, ImageConfig};
use kiln_oci::walk::Tree;
use kiln_sbom::Sbom;
use kiln_scan::version::Scheme;
use serde::Serialize;
use serde_json::{Value, json};

use crate::Layers;
use crate::error::AnalyzeError;
use crate::files::{self, FileDiff};

/// The JSON schema name and version.
pub const SCHEMA: &str = "kiln-diff/v1";

/// One image of the pair.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// As named.
    pub image: String,
    /// Manifest digest.
    pub digest: String,
    /// Layer count.
    pub layers: usize,
    /// Packages catalogued.
    pub packages: usize,
}

/// A config field that differs (`env.KEY`, `labels.KEY`, `user`, `entrypoint`…).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    /// The field.
    pub field: String,
    /// Its value in A (`null` when unset).
    pub a: Value,
    /// Its value in B.
    pub b: Value,
}

/// A package in one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageRef {
    /// Name.
    pub name: String,
    /// Ecosystem (`deb`, `python`…).
    pub ecosystem: String,
    /// Version.
    pub version: String,
    /// Package URL.
    pub purl: String,
}

/// A package in both images at different versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionChange {
    /// Name.
    pub name: String,
    /// Ecosystem.
    pub ecosystem: String,
    /// Version in A.
    pub from: String,
    /// Version in B.
    pub to: String,
}

/// Package changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackageDiff {
    /// In B only.
    pub added: Vec<PackageRef>,
    /// In A only.
    pub removed: Vec<PackageRef>,
    /// Newer in B.
    pub upgraded: Vec<VersionChange>,
    /// Older in B.
    pub downgraded: Vec<VersionChange>,
}

/// A vulnerability of one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VulnRef {
    /// OSV id.
    pub id: String,
    /// The package.
    pub package: String,
    /// Its installed version.
    pub version: String,
    /// Severity.
    pub severity: String,
    /// First fixed version, when known.
    pub fixed: Option<String>,
}

/// Vulnerability changes against the offline database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VulnDiff {
    /// False when no database was available (then both lists are empty).
    pub checked: bool,
    /// In B, not in A.
    pub introduced: Vec<VulnRef>,
    /// In A, not in B.
    pub fixed: Vec<VulnRef>,
}

/// Layer sharing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerDiff {
    /// diff_ids both images have.
    pub shared: Vec<String>,
    /// Layers only A has.
    pub only_a: usize,
    /// Layers only B has.
    pub only_b: usize,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The old image.
    pub a: Side,
    /// The new image.
    pub b: Side,
    /// Config fields that differ.
    pub config: Vec<ConfigChange>,
    /// Files.
    pub files: FileDiff,
    /// Packages.
    pub packages: PackageDiff,
    /// Vulnerabilities.
    pub vulnerabilities: VulnDiff,
    /// Layers.
    pub layers: LayerDiff,
}

/// One opened image.
pub struct Input<'a> {
    /// As named.
    pub reference: &'a str,
    /// Where its layers are read from.
    pub layers: Layers<'a>,
    /// The image.
    pub image: &'a Image,
}

/// The config fields a release reviewer cares about, flattened so each can differ alone.
fn config_fields(c: &ImageConfig) -> BTreeMap<String, Value> {
    let r = &c.config;
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.to_string(), v);
        }
    };
    put("user", json!(r.user));
    put("entrypoint", json!(r.entrypoint));
    put("cmd", json!(r.cmd));
    put("workdir", json!(r.working_dir));
    put("stop_signal", json!(r.stop_signal));
    put(
        "ports",
        json!(r.exposed_ports.as_ref().map(|p| p.keys().collect::<Vec<_>>())),
    );
    put(
        "volumes",
        json!(r.volumes.as_ref().map(|p| p.keys().collect::<Vec<_>>())),
    );
    for e in r.env.iter().flatten() {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        put(&format!("env.{k}"), json!(v));
    }
    for (k, v) in r.labels.iter().flatten() {
        put(&format!("labels.{k}"), json!(v));
    }
    m
}

/// Config fields that differ, sorted by field.
pub fn config_changes(a: &ImageConfig, b: &ImageConfig) -> Vec<ConfigChange> {
    let (fa, fb) = (config_fields(a), config_fields(b));
    let mut keys: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| ConfigChange {
            field: k.clone(),
            a: fa.get(k).cloned().unwrap_or(Value::Null),
            b: fb.get(k).cloned().unwrap_or(Value::Null),
        })
        .collect()
}

fn scheme(ecosystem: &str) -> Scheme {
    match ecosystem {
        "deb" => Scheme::Dpkg,
        "apk" => Scheme::Apk,
        "python" => Scheme::Pep440,
        "npm" | "rust" => Scheme::Semver,
        "go" => Scheme::Go,
        "java" => Scheme::Maven,
        _ => Scheme::Generic,
    }
}

fn package_map(s: &Sbom) -> BTreeMap<(String, String), PackageRef> {
    s.packages
        .iter()
        .filter(|p| !p.build_only)
        .map(|p| {
            let eco = p.ecosystem.as_str().to_string();
            (
                (eco.clone(), p.name.clone()),
                PackageRef {
                    name: p.name.clone(),
                    ecosystem: eco,
                    version: p.version.clone(),
                    purl: p.purl.clone(),
                },
            )
        })
        .collect()
}

/// Packages added, removed, upgraded and downgraded (by each ecosystem's version order).
pub fn package_changes(a: &Sbom, b: &Sbom) -> PackageDiff {
    let (ma, mb) = (package_map(a), package_map(b));
    let mut d = PackageDiff::default();
    for (k, pa) in &ma {
        match mb.get(k) {
            None => d.removed.push(pa.clone()),
            Some(pb) if pb.version != pa.version => {
                let c = VersionChange {
                    name: pa.name.clone(),
                    ecosystem: pa.ecosystem.clone(),
                    from: pa.version.clone(),
                    to: pb.version.clone(),
                };
                if scheme(&pa.ecosystem).compare(&pb.version, &pa.version).is_lt() {
                    d.downgraded.push(c);
                } else {
                    d.upgraded.push(c);
                }
            }
            Some(_) => {}
        }
    }
    d.added = mb
        .iter()
        .filter(|(k, _)| !ma.contains_key(*k))
        .map(|(_, p)| p.clone())
        .collect();
    d
}

fn vulns(db: &kiln_scan::vuln::OpenDb, sbom: &Sbom, img: &Image, name: &str) -> Result<Vec<VulnRef>, AnalyzeError> {
    let mut report = kiln_scan::Report::new(name, img.descriptor.digest.to_string(), vec![]);
    kiln_scan::vuln::scan(db, sbom, img, &mut report).map_err(|e| AnalyzeError::Image {
        image: name.to_string(),
        message: e.to_string(),
        input: false,
    })?;
    let mut out: Vec<VulnRef> = report
        .vulnerabilities
        .into_iter()
        .map(|v| VulnRef {
            id: v.id,
            package: v.package,
            version: v.installed,
            severity: format!("{:?}", v.severity).to_uppercase(),
            fixed: v.fixed,
        })
        .collect();
    out.sort_by(|x, y| (&x.id, &x.package).cmp(&(&y.id, &y.package)));
    out.dedup_by(|x, y| x.id == y.id && x.package == y.package);
    Ok(out)
}

/// Vulnerabilities introduced (in B, not A) and fixed (in A, not B), by id and package.
pub fn vuln_changes(
    db: Option<&kiln_scan::vuln::OpenDb>,
    a: (&Sbom, &Input<'_>),
    b: (&Sbom, &Input<'_>),
) -> Result<VulnDiff, AnalyzeError> {
    let Some(db) = db else {
        return Ok(VulnDiff::default());
    };
    let va = vulns(db, a.0, a.1.image, a.1.reference)?;
    let vb = vulns(db, b.0, b.1.image, b.1.reference)?;
    let key = |v: &VulnRef| (v.id.clone(), v.package.clone());
    let ka: std::collections::BTreeSet<_> = va.iter().map(key).collect();
    let kb: std::collections::BTreeSet<_> = vb.iter().map(key).collect();
    Ok(VulnDiff {
        checked: true,
        introduced: vb.iter().filter(|v| !ka.contains(&key(v))).cloned().collect(),
        fixed: va.iter().filter(|v| !kb.contains(&key(v))).cloned().collect(),
    })
}

/// One image read once: its final filesystem with file hashes, and its packages catalogued
/// from the same pass (the catalogers' collector keeps what they read before the hasher
/// streams the rest).
fn read_side(i: &Input<'_>, jobs: usize) -> Result<(BTreeMap<String, files::FileEntry>, Sbom), AnalyzeError> {
    let opts = kiln_sbom::Options {
        jobs,
        ..Default::default()
    };
    let walked = crate::walk_image(i.reference, i.layers, i.image, jobs, |_| {
        (kiln_sbom::walk::Collector::new(&opts), files::Hasher::default())
    })?;
    let tree = Tree::of(walked.iter().map(|w| w.changes.as_slice()));
    let fs = kiln_sbom::walk::Fs::from_walk(&tree, walked.iter().map(|w| &w.visitor.0));
    let sbom = kiln_sbom::catalog_walked(&fs, i.image, i.reference, None);
    Ok((files::entries(&tree, |l| &walked[l].visitor.1), sbom))
}

/// Compares `a` (the old release) with `b` (the new one). The two images are read at the
/// same time, each once.
pub fn diff(
    a: &Input<'_>,
    b: &Input<'_>,
    db: Option<&kiln_scan::vuln::OpenDb>,
    jobs: usize,
) -> Result<Diff, AnalyzeError> {
    let (ra, rb) = std::thread::scope(|s| {
        let side_b = s.spawn(|| read_side(b, jobs));
        let ra = read_side(a, jobs);
        (ra, side_b.join().expect("reading image B panicked"))
    });
    let ((ta, sa), (tb, sb)) = (ra?, rb?);
    let ids_a = &a.image.config.rootfs.diff_ids;
    let ids_b = &b.image.config.rootfs.diff_ids;
    let shared: Vec<String> = ids_a
        .iter()
        .filter(|d| ids_b.contains(d))
        .map(|d| d.to_string())
        .collect();
    let side = |i: &Input<'_>, s: &Sbom| Side {
        image: i.reference.to_string(),
        digest: i.image.descriptor.digest.to_string(),
        layers: i.image.manifest.layers.len(),
        packages: s.packages.len(),
    };
    Ok(Diff {
        schema: SCHEMA,
        a: side(a, &sa),
        b: side(b, &sb),
        config: config_changes(&a.image.config, &b.image.config),
        files: files::compare(&ta, &tb),
        packages: package_changes(&sa, &sb),
        vulnerabilities: vuln_changes(db, (&sa, a), (&sb, b))?,
        layers: LayerDiff {
            only_a: ids_a.len() - shared.len(),
            only_b: ids_b.iter().filter(|d| !ids_a.contains(d)).count(),
            shared,
        },
    })
}

/// Which sections `--fail-on` names have changes (vulnerabilities: only introduced ones).
pub fn failing(d: &Diff, sections: &[String]) -> Vec<String> {
    sections
        .iter()
        .filter(|s| match s.as_str() {
            "files" => !(d.files.added.is_empty() && d.files.removed.is_empty() && d.files.changed.is_empty()),
            "packages" => d.packages != PackageDiff::default(),
            "vulns" => !d.vulnerabilities.introduced.is_empty(),
            "config" => !d.config.is_empty(),
            _ => false,
        })
        .cloned()
        .collect()
}
