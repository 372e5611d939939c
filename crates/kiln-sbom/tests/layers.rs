//! Catalogues of hand-made multi-layer images: whiteouts and opaque directories remove
//! packages lower layers installed, replaced files win, each package names the layer its
//! evidence came from, and bad metadata is a warning, not an error.

use std::collections::BTreeMap;

use kiln_oci::image::{Image, ImageConfig};
use kiln_oci::{Descriptor, Manifest, Store, media};
use kiln_sbom::{Options, Sbom, catalog_image};

fn layer(store: &Store, files: &[(&str, &[u8], u32)]) -> Descriptor {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    let bytes = b.into_inner().unwrap();
    let d = store.put_blob(&bytes).unwrap();
    Descriptor::new(media::OCI_LAYER_TAR, d, bytes.len() as u64)
}

fn image(store: &Store, layers: Vec<Descriptor>) -> Image {
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        created: Some("2024-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    let cfg = store.put_blob(b"{}").unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(media::OCI_CONFIG, cfg, 2),
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let m = store.put_blob(&kiln_oci::canonical_json(&manifest)).unwrap();
    Image {
        descriptor: Descriptor::new(media::OCI_MANIFEST, m, 1),
        manifest,
        config,
    }
}

fn names(s: &Sbom) -> Vec<String> {
    let mut v: Vec<String> = s.packages.iter().map(|p| format!("{}@{}", p.name, p.version)).collect();
    v.sort();
    v
}

const STATUS: &[u8] = b"Package: base\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 2\n";

/// A Debian 12 os-release and the dpkg status above, as layer entries.
const DEBIAN_12: (&str, &[u8], u32) = ("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n", 0o644);
const DPKG_STATUS: (&str, &[u8], u32) = ("var/lib/dpkg/status", STATUS, 0o644);

#[test]
fn whiteouts_opaque_dirs_and_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let l0 = layer(
        &store,
        &[
            DEBIAN_12,
            DPKG_STATUS,
            (
                "app/node_modules/a/package.json",
                br#"{"name":"a","version":"1.0.0"}"#,
                0o644,
            ),
            (
                "app/node_modules/b/package.json",
                br#"{"name":"b","version":"1.0.0"}"#,
                0o644,
            ),
            ("srv/lib/x-1.dist-info/METADATA", b"Name: x\nVersion: 1\n", 0o644),
        ],
    );
    let l1 = layer(
        &store,
        &[
            // Removes package a, and everything under /srv/lib from lower layers.
            ("app/node_modules/.wh.a", b"", 0o644),
            ("srv/lib/.wh..wh..opq", b"", 0o644),
            ("srv/lib/y-2.dist-info/METADATA", b"Name: y\nVersion: 2\n", 0o644),
            // A newer status replaces the old one.
            (
                "var/lib/dpkg/status",
                b"Package: base\nStatus: install ok installed\nVersion: 1.1\nArchitecture: all\n",
                0o644,
            ),
        ],
    );
    let img = image(&store, vec![l0.clone(), l1.clone()]);
    let s = catalog_image(&store, &img, "test", None, &Options::default()).unwrap();
    assert_eq!(names(&s), ["b@1.0.0", "base@1.1", "y@2"], "{:?}", s.packages);
    assert_eq!(s.os.as_ref().unwrap().distro(), "debian-12");
    let layer_of = |n: &str| s.packages.iter().find(|p| p.name == n).unwrap().layer.clone().unwrap();
    assert_eq!(layer_of("b"), l0.digest);
    assert_eq!(layer_of("base"), l1.digest);
    assert_eq!(layer_of("y"), l1.digest);
    assert_eq!(s.created, "2024-01-01T00:00:00Z");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // Same image, same bytes.
    let again = catalog_image(&store, &img, "other name", None, &Options::default()).unwrap();
    assert_eq!(kiln_sbom::spdx::to_json(&s), kiln_sbom::spdx::to_json(&again));
    assert_eq!(kiln_sbom::cyclonedx::to_json(&s), kiln_sbom::cyclonedx::to_json(&again));
}

#[test]
fn bad_metadata_is_skipped_with_a_warning_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let l0 = layer(
        &store,
        &[
            (
                "var/lib/dpkg/status",
                b"Package: ok\nVersion: 1\n\nPackage: bad\nno colon here\n",
                0o644,
            ),
            (
                "usr/lib/python3/z-1.dist-info/METADATA",
                b"Name: z\nVersion: \xff\n",
                0o644,
            ),
            ("app/node_modules/c/package.json", b"{not json", 0o644),
            ("app/lib/broken-1.0.jar", b"PK\x03\x04 and then nothing", 0o644),
            ("usr/bin/tool", b"\x7fELF\x02\x01\x01 cut short", 0o755),
        ],
    );
    let img = image(&store, vec![l0]);
    let s = catalog_image(&store, &img, "test", None, &Options::default()).unwrap();
    assert_eq!(names(&s), ["ok@1"]);
    for f in [
        "/var/lib/dpkg/status",
        "/usr/lib/python3/z-1.dist-info/METADATA",
        "/app/node_modules/c/package.json",
        "/app/lib/broken-1.0.jar",
    ] {
        assert!(
            s.warnings.iter().any(|w| w.starts_with(f)),
            "no warning for {f}: {:?}",
            s.warnings
        );
    }
}

#[test]
fn apk_distroless_status_d_and_cargo_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let l0 = layer(
        &store,
        &[
            ("etc/os-release", b"ID=alpine\nVERSION_ID=3.20.3\n", 0o644),
            (
                "lib/apk/db/installed",
                b"P:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\no:musl\nF:lib\nR:ld-musl-x86_64.so.1\n\n\
P:busybox\nV:1.36.1-r29\nA:x86_64\nL:GPL-2.0-only\nD:so:libc.musl-x86_64.so.1 musl\n\n",
                0o644,
            ),
            (
                "var/lib/dpkg/status.d/tzdata",
                b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n",
                0o644,
            ),
            ("var/lib/dpkg/status.d/tzdata.md5sums", b"abc  usr/share/zoneinfo/UTC\n", 0o644),
            (
                "src/app/Cargo.lock",
                b"version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\n \"itoa\",\n]\n\n[[package]]\nname = \"itoa\"\nversion = \"1.0.11\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
                0o644,
            ),
        ],
    );
    let img = image(&store, vec![l0]);
    let s = catalog_image(&store, &img, "test", None, &Options::default()).unwrap();
    assert_eq!(
        names(&s),
        [
            "app@0.1.0",
            "busybox@1.36.1-r29",
            "itoa@1.0.11",
            "musl@1.2.5-r0",
            "tzdata@2024a-0+deb12u1"
        ]
    );
    let get = |n: &str| s.packages.iter().find(|p| p.name == n).unwrap();
    assert_eq!(
        get("musl").purl,
        "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.3"
    );
    assert_eq!(get("musl").files, ["/lib/ld-musl-x86_64.so.1"]);
    assert_eq!(get("busybox").depends, ["musl"]);
    assert_eq!(get("tzdata").files, ["/usr/share/zoneinfo/UTC"]);
    assert_eq!(get("app").depends, ["itoa"]);
    let cdx = String::from_utf8(kiln_sbom::cyclonedx::to_json(&s)).unwrap();
    assert_eq!(cdx.matches("\"operating-system\"").count(), 1);
}

/// The entries of the per-layer cache in `store`.
fn cached(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(kiln_sbom::layer_cache::dir(store))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn layers_catalogued_once_are_read_back_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let l0 = layer(
        &store,
        &[
            DEBIAN_12,
            DPKG_STATUS,
            ("srv/lib/x-1.dist-info/METADATA", b"Name: x\nVersion: 1\n", 0o644),
        ],
    );
    let l1 = layer(&store, &[("srv/lib/.wh..wh..opq", b"", 0o644)]);
    let img = image(&store, vec![l0.clone(), l1.clone()]);
    let json = |opts: &Options, img: &Image| {
        let s = catalog_image(&store, img, "t", None, opts).unwrap();
        (kiln_sbom::spdx::to_json(&s), names(&s))
    };
    let off = Options::default();
    let on = Options {
        layer_cache: true,
        ..Options::default()
    };
    let (cold, cold_names) = json(&off, &img);
    assert_eq!(cold_names, ["base@1"]);
    assert!(cached(&store).is_empty(), "{:?}", cached(&store));

    // Catalogued with the cache: one entry per layer, the same document.
    assert_eq!(json(&on, &img).0, cold);
    let entry = |d: &kiln_oci::Digest| format!("sha256-{}.json", d.hex());
    assert_eq!(cached(&store), {
        let mut v = vec![entry(&l0.digest), entry(&l1.digest)];
        v.sort();
        v
    });

    // The base layer's blob goes: the catalogue still comes out the same, from the cache.
    let blob = dir.path().join("blobs/sha256").join(l0.digest.hex());
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::remove_file(&blob).unwrap();
    assert_eq!(json(&on, &img).0, cold);
    assert!(
        catalog_image(&store, &img, "t", None, &off).is_err(),
        "without the cache the blob is needed"
    );

    // A stale entry (another cataloguer's stamp) is a miss: the layer is walked again.
    let path = kiln_sbom::layer_cache::dir(&store).join(entry(&l0.digest));
    let stale = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    let stale = stale.replacen("\"stamp\":\"1/", "\"stamp\":\"0/", 1);
    std::fs::write(&path, &stale).unwrap();
    assert!(catalog_image(&store, &img, "t", None, &on).is_err());
    std::fs::write(&blob, &bytes).unwrap();
    assert_eq!(json(&on, &img).0, cold);
    assert!(!std::fs::read_to_string(&path).unwrap().contains("\"stamp\":\"0/"));

    // A layer on top of the cached ones still hides what it removes.
    let l2 = layer(&store, &[("var/lib/dpkg/.wh.status", b"", 0o644)]);
    let top = image(&store, vec![l0.clone(), l1.clone(), l2]);
    assert!(json(&on, &top).1.is_empty());

    // After a prune took a layer's blob, its entry is swept.
    std::fs::remove_file(&blob).unwrap();
    assert_eq!(kiln_sbom::layer_cache::sweep(&store), 1);
    assert_eq!(cached(&store).len(), 2);

    // A layout kiln does not keep is never written to.
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign = Store::open(foreign_dir.path()).unwrap();
    let f0 = layer(&foreign, &[("etc/os-release", b"ID=debian\n", 0o644)]);
    let fimg = image(&foreign, vec![f0]);
    std::fs::remove_dir_all(foreign.meta_dir()).unwrap();
    let foreign = Store::open_foreign(foreign_dir.path()).unwrap();
    catalog_image(&foreign, &fimg, "t", None, &on).unwrap();
    assert!(!foreign.meta_dir().exists());
}
