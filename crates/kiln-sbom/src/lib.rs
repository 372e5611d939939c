//! kiln's software bill of materials: what is inside an image, read straight from its layers.
//!
//! [`catalog_image`] streams every layer's tar once (layers decode in parallel, through
//! `kiln_oci::walk`), keeps only the files catalogers need ([`walk`]), replays whiteouts and
//! opaque directories into the final filesystem, and hands the kept files to the catalogers: dpkg,
//! apk, Python, npm, Go and Rust binaries, Cargo.lock, Java archives and os-release. The
//! result, an [`Sbom`], is written as SPDX 2.3 ([`spdx`]), CycloneDX 1.6 ([`cyclonedx`]),
//! a table ([`table`]) or kiln's own JSON. Every writer is deterministic: the same image
//! gives the same bytes, because ids, order, names and times come from the image alone.
//!
//! Bad input never stops a catalogue: a package whose metadata cannot be read is skipped
//! and a warning names the file and the layer it came from.

pub mod binary;
pub mod cyclonedx;
pub mod dpkg;
pub mod java;
pub mod layer_cache;
pub mod license;
pub mod purl;
pub mod spdx;
pub mod table;
pub mod text;
pub mod walk;

use std::collections::BTreeMap;

use kiln_oci::image::Image;
use kiln_oci::{Digest, Store};
use serde::{Deserialize, Serialize};

/// Why an image could not be catalogued at all (bad packages are warnings, not errors).
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// A layer blob could not be opened or decoded.
    #[error("layer {digest}: {reason} (hint: the image is incomplete or corrupt; pull or build it again)")]
    Layer {
        /// The layer's blob digest.
        digest: Digest,
        /// What went wrong.
        reason: String,
    },
}

impl From<kiln_oci::walk::WalkError> for SbomError {
    fn from(e: kiln_oci::walk::WalkError) -> Self {
        SbomError::Layer {
            digest: e.digest,
            reason: e.reason,
        }
    }
}

/// The package ecosystems kiln catalogues; decides the purl type and the table's TYPE column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ecosystem {
    /// Debian packages (dpkg database).
    Deb,
    /// Alpine packages (apk database).
    Apk,
    /// Python distributions (dist-info, egg-info).
    Python,
    /// npm packages (package.json, package-lock.json).
    Npm,
    /// Go modules embedded in binaries, and the Go standard library.
    Go,
    /// Rust crates (cargo-auditable's section, Cargo.lock).
    Rust,
    /// Java archives (manifests, pom.properties).
    Java,
}

impl Ecosystem {
    /// The name shown in tables and properties.
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Python => "python",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "go-module",
            Ecosystem::Rust => "rust-crate",
            Ecosystem::Java => "java-archive",
        }
    }

    /// OS packages are tied to the operating-system component (trivy relies on that).
    pub fn is_os(self) -> bool {
        matches!(self, Ecosystem::Deb | Ecosystem::Apk)
    }
}

/// One package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Package name as its ecosystem spells it (maven: the artifactId).
    pub name: String,
    /// Version as its ecosystem spells it.
    pub version: String,
    /// Which ecosystem.
    pub ecosystem: Ecosystem,
    /// Package URL.
    pub purl: String,
    /// Declared licenses, as written (SPDX ids or free text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<String>,
    /// Who supplies it (maintainer, author), when the metadata says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    /// Digest of the layer the evidence came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Digest>,
    /// The files that prove the package is there: the metadata file first, then the
    /// package's own files where the metadata lists them.
    pub evidence: Vec<String>,
    /// Files the package owns (dpkg lists, RECORD), when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Names of packages (same ecosystem) this one depends on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends: Vec<String>,
    /// Extra facts: architecture, source package, group, Go version…
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Present only in a builder stage, not in the final image.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build_only: bool,
}

impl Package {
    /// A package with the required fields and nothing else.
    pub fn new(ecosystem: Ecosystem, name: impl Into<String>, version: impl Into<String>, purl: String) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            ecosystem,
            purl,
            licenses: vec![],
            supplier: None,
            layer: None,
            evidence: vec![],
            files: vec![],
            depends: vec![],
            properties: BTreeMap::new(),
            build_only: false,
        }
    }

    /// The key packages are sorted and de-duplicated by.
    fn sort_key(&self) -> (String, String, String, Vec<String>) {
        (
            self.purl.clone(),
            self.name.clone(),
            self.version.clone(),
            self.evidence.clone(),
        )
    }
}

/// The operating system, from `/etc/os-release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// `ID` (debian, alpine…).
    pub id: String,
    /// `VERSION_ID` (12, 3.20…), or `VERSION_CODENAME` when there is none (testing).
    pub version: String,
    /// `PRETTY_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    /// `VERSION_CODENAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codename: Option<String>,
}

impl OsInfo {
    /// The purl `distro=` qualifier: `debian-12`.
    pub fn distro(&self) -> String {
        format!("{}-{}", self.id, self.version)
    }
}

/// A catalogue of one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sbom {
    /// The image's manifest digest: the SBOM's identity.
    pub image: Digest,
    /// How the user named the image (informational: never written, so that every
    /// transport and name of the same image gives the same bytes).
    #[serde(skip)]
    pub name: String,
    /// RFC 3339 creation time (SOURCE_DATE_EPOCH, else the image's `created`).
    pub created: String,
    /// The image's platform (`linux/amd64`).
    pub platform: String,
    /// Who supplies the image: its `org.opencontainers.image.vendor` label, else its author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    /// The operating system, when os-release says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    /// Every package, sorted by purl.
    pub packages: Vec<Package>,
    /// Packages skipped and why (each names the file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The kiln version written as the SBOM's creator tool.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Options for [`catalog_image`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Binaries (Go, Rust) and archives (jar) larger than this are not read.
    pub max_binary_size: u64,
    /// Threads decoding layers at once.
    pub jobs: usize,
    /// Keep each layer's walk by digest beside a store kiln keeps, and read it back instead
    /// of decoding the layer again ([`layer_cache`]). A build turns it on: its base was
    /// checked when it came in and is catalogued into every image built on it. Off by
    /// default, so `kiln sbom` reads (and checks against its digest) every layer it reports.
    pub layer_cache: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_binary_size: 256 << 20,
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(4),
            layer_cache: false,
        }
    }
}

/// Catalogues `image` (whose blobs are in `layout`). `created` overrides the creation time
/// (pass SOURCE_DATE_EPOCH as RFC 3339); otherwise the image config's `created` is used.
pub fn catalog_image(
    layout: &Store,
    image: &Image,
    name: &str,
    created: Option<String>,
    opts: &Options,
) -> Result<Sbom, SbomError> {
    let fs = walk::read_layers(layout, &image.manifest.layers, opts)?;
    Ok(catalog_walked(&fs, image, name, created))
}

/// Catalogues `image` from its final filesystem as a walk already collected it (`kiln scan`
/// collects it in the same pass as its secret scanner, so layers are read once).
pub fn catalog_walked(fs: &walk::Fs, image: &Image, name: &str, created: Option<String>) -> Sbom {
    let (os, mut packages, warnings) = catalog_fs(fs, &image.manifest.layers);
    finish(&mut packages);
    let platform = match &image.config.variant {
        Some(v) => format!("{}/{}/{v}", image.config.os, image.config.architecture),
        None => format!("{}/{}", image.config.os, image.config.architecture),
    };
    Sbom {
        image: image.descriptor.digest.clone(),
        name: name.to_string(),
        created: created
            .or_else(|| image.config.created.clone())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
        platform,
        supplier: image
            .config
            .config
            .labels
            .as_ref()
            .and_then(|l| l.get("org.opencontainers.image.vendor").cloned())
            .or_else(|| image.config.author.clone())
            .filter(|s| !s.trim().is_empty()),
        os,
        packages,
        warnings,
    }
}

/// Adds the packages of builder-stage layers that the final image does not have, marked
/// build-time only.
pub fn add_build_stage(
    sbom: &mut Sbom,
    layout: &Store,
    layers: &[kiln_oci::Descriptor],
    opts: &Options,
) -> Result<(), SbomError> {
    let fs = walk::read_layers(layout, layers, opts)?;
    let (_, pkgs, warnings) = catalog_fs(&fs, layers);
    let have: std::collections::BTreeSet<String> = sbom.packages.iter().map(|p| p.purl.clone()).collect();
    for mut p in pkgs {
        if !have.contains(&p.purl) {
            p.build_only = true;
            sbom.packages.push(p);
        }
    }
    sbom.warnings.extend(warnings);
    finish(&mut sbom.packages);
    Ok(())
}

fn finish(packages: &mut Vec<Package>) {
    for p in packages.iter_mut() {
        p.depends.sort();
        p.depends.dedup();
        p.licenses.sort();
        p.licenses.dedup();
    }
    packages.sort_by_key(Package::sort_key);
    packages.dedup_by(|a, b| a.purl == b.purl && a.evidence == b.evidence);
}

/// Runs every cataloger over a final filesystem.
fn catalog_fs(fs: &walk::Fs, layers: &[kiln_oci::Descriptor]) -> (Option<OsInfo>, Vec<Package>, Vec<String>) {
    let mut cx = Context {
        layers,
        packages: vec![],
        warnings: fs.warnings.clone(),
    };
    let os = text::os_release(fs);
    let distro = os.as_ref().map(OsInfo::distro);
    dpkg::catalog(fs, distro.as_deref(), &mut cx);
    text::apk(fs, distro.as_deref(), &mut cx);
    text::python(fs, &mut cx);
    text::npm(fs, &mut cx);
    text::cargo_lock(fs, &mut cx);
    for (path, f) in &fs.files {
        if let walk::Content::Found(pkgs, warns) = &f.content {
            for p in pkgs {
                let mut p = p.clone();
                p.layer = cx.layer(f.layer);
                if p.evidence.is_empty() {
                    p.evidence.push(path.clone());
                }
                cx.packages.push(p);
            }
            cx.warnings.extend(warns.iter().cloned());
        }
    }
    (os, cx.packages, cx.warnings)
}

/// What catalogers add to.
pub struct Context<'a> {
    layers: &'a [kiln_oci::Descriptor],
    /// Packages found so far.
    pub packages: Vec<Package>,
    /// Warnings so far.
    pub warnings: Vec<String>,
}

impl Context<'_> {
    /// The digest of layer number `i`.
    pub fn layer(&self, i: usize) -> Option<Digest> {
        self.layers.get(i).map(|d| d.digest.clone())
    }

    /// Records a skipped package.
    pub fn warn(&mut self, path: &str, layer: usize, reason: impl std::fmt::Display) {
        let l = self
            .layer(layer)
            .map(|d| format!(" (layer {})", short(&d)))
            .unwrap_or_default();
        self.warnings.push(format!("{path}{l}: {reason}; package skipped"));
    }
}

/// `sha256:` and the first 12 hex digits.
pub fn short(d: &Digest) -> String {
    format!("{}:{}", d.algorithm().as_str(), &d.hex()[..12.min(d.hex().len())])
}
