//! Store management: `images`, `inspect`, `tag`, `rmi`, `prune`.

use std::collections::BTreeSet;

use kiln_oci::Store;
use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::transport::{Remote, open_image};

use crate::cli::{Format, ImagesArgs, InspectArgs, PruneArgs, RmiArgs, TagArgs};
use crate::error::CliError;
use crate::names::parse_image;

/// One line of `kiln images`.
struct Row {
    repository: String,
    tag: String,
    digest: String,
    size: u64,
    media_type: String,
}

/// `kiln images [NAME]`.
pub fn images(store: &Store, args: &ImagesArgs) -> Result<(), CliError> {
    let index = store.index()?;
    let filter = args.reference.as_deref().map(RefFilter::parse);
    let mut rows = Vec::new();
    for m in &index.manifests {
        // Artifacts that refer to an image (its SBOMs) are not images.
        if m.artifact_type.is_some() && m.ref_name().is_none() && !args.all {
            continue;
        }
        let (repository, tag) = match m.ref_name().and_then(|n| Name::parse(n).ok()) {
            Some(n) => (n.repository, n.tag.unwrap_or_else(|| "<none>".into())),
            None => (m.ref_name().unwrap_or("<none>").to_string(), "<none>".to_string()),
        };
        // cosign's signature and attestation tags are not images either.
        if !args.all && crate::names::cosign_subject(&tag).is_some() {
            continue;
        }
        if filter.as_ref().is_some_and(|f| !f.matches(&repository, &tag)) {
            continue;
        }
        let mut reachable = BTreeSet::new();
        let size: u64 = match store.reachable(m, &mut reachable) {
            Ok(()) => reachable
                .iter()
                .filter_map(|d| std::fs::metadata(store.blob_path(d)).ok())
                .map(|md| md.len())
                .sum(),
            Err(_) => 0,
        };
        rows.push(Row {
            repository,
            tag,
            digest: m.digest.to_string(),
            size,
            media_type: m.media_type.clone(),
        });
    }
    rows.sort_by(|a, b| (&a.repository, &a.tag, &a.digest).cmp(&(&b.repository, &b.tag, &b.digest)));
    let short = |d: &str| -> String {
        if args.no_trunc {
            d.to_string()
        } else {
            d.chars().take(19).collect()
        }
    };
    if args.quiet {
        let mut seen = BTreeSet::new();
        for r in &rows {
            if seen.insert(r.digest.clone()) {
                println!("{}", short(&r.digest));
            }
        }
        return Ok(());
    }
    match args.format {
        Format::Json => {
            let v: Vec<_> = rows
                .iter()
                .map(|r| serde_json::json!({"repository": r.repository, "tag": r.tag, "digest": r.digest, "size": r.size, "mediaType": r.media_type}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
        Format::Table => {
            println!("{:<40} {:<16} {:<20} {:>10}", "REPOSITORY", "TAG", "DIGEST", "SIZE");
            for r in rows {
                println!(
                    "{:<40} {:<16} {:<20} {:>10}",
                    r.repository,
                    r.tag,
                    short(&r.digest),
                    human_size(r.size)
                );
            }
        }
    }
    Ok(())
}

/// `kiln images REPOSITORY[:TAG]`, where `*` matches any run of characters but `/`.
struct RefFilter {
    repository: String,
    tag: Option<String>,
}

impl RefFilter {
    fn parse(s: &str) -> RefFilter {
        let last_slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
        match s[last_slash..].rfind(':') {
            Some(i) => RefFilter {
                repository: s[..last_slash + i].to_string(),
                tag: Some(s[last_slash + i + 1..].to_string()),
            },
            None => RefFilter {
                repository: s.to_string(),
                tag: None,
            },
        }
    }

    fn matches(&self, repository: &str, tag: &str) -> bool {
        glob(&self.repository, repository) && self.tag.as_deref().is_none_or(|t| glob(t, tag))
    }
}

/// `*` matches any characters except `/`; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i) && !rest[..i].contains('/'))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

/// Sizes as docker prints them (powers of 1000).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// `kiln inspect`.
pub fn inspect(store: &Store, args: &InspectArgs) -> Result<(), CliError> {
    let platform = super::parse_platform(&args.platform)?;
    let registries = super::registry_access(&args.registry)?;
    let opened = super::open_image(store, &args.image, platform.as_ref(), &registries)?;
    match args.format.as_deref() {
        None | Some("json") => {
            let out = serde_json::json!({
                "name": args.image,
                "digest": opened.image.descriptor.digest,
                "descriptor": opened.descriptor,
                "manifest": opened.image.manifest,
                "config": opened.image.config,
            });
            println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        }
        Some(t) => {
            let data = template_data(store, &args.image, &opened)?;
            let text = crate::template::render(t, &data).map_err(|e| CliError::input(format!("--format: {e}")))?;
            println!("{text}");
        }
    }
    Ok(())
}

/// The run config's fields, as `docker inspect` shows them.
const RUN_CONFIG_FIELDS: &[&str] = &[
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// The fields `kiln inspect --format` templates see, named as in `docker inspect`.
fn template_data(
    store: &Store,
    name: &str,
    opened: &kiln_oci::transport::OpenedImage,
) -> Result<serde_json::Value, CliError> {
    let img = &opened.image;
    // The store's names for this image (none for an image only in a file or registry).
    let repo_tags: Vec<String> = store
        .index()?
        .manifests
        .iter()
        .filter(|m| m.digest == opened.descriptor.digest)
        .filter_map(|m| m.ref_name().map(str::to_string))
        .collect();
    let mut config = serde_json::to_value(&img.config).expect("configs serialise");
    // Fields a config leaves out are still fields (as in docker's structs): `{{.Config.Cmd}}`
    // of an image without CMD prints `<no value>` rather than failing like a typo.
    if let Some(run) = config.get_mut("config").and_then(|c| c.as_object_mut()) {
        for key in RUN_CONFIG_FIELDS {
            run.entry(*key).or_insert(serde_json::Value::Null);
        }
    }
    Ok(serde_json::json!({
        "Name": name,
        "Id": img.manifest.config.digest,
        "Digest": img.descriptor.digest,
        "RepoTags": repo_tags,
        "MediaType": img.descriptor.media_type,
        "Created": img.config.created,
        "Author": img.config.author,
        "Architecture": img.config.architecture,
        "Os": img.config.os,
        "Variant": img.config.variant,
        "Size": img.manifest.layers.iter().map(|l| l.size).sum::<u64>(),
        "Config": config["config"],
        "Labels": config["config"]["Labels"],
        "RootFS": {"Type": img.config.rootfs.kind, "Layers": img.config.rootfs.diff_ids},
        "History": config["history"],
        "Layers": img.manifest.layers,
        "Annotations": img.manifest.annotations,
        "Manifest": img.manifest,
        "Descriptor": opened.descriptor,
    }))
}

/// `kiln tag`.
pub fn tag(store: &Store, args: &TagArgs) -> Result<(), CliError> {
    let src = parse_image(store, &args.source)?;
    if !matches!(src, ImageRef::Store(_) | ImageRef::StoreDigest(_)) {
        return Err(CliError::input(format!(
            "kiln tag {}: the source must be in the store (hint: use kiln load or kiln copy for files)",
            args.source
        )));
    }
    let opened = open_image(store, &src, None, Remote::Never)?;
    let target = Name::parse(&args.target)?;
    let mut desc = opened.descriptor.clone();
    desc.annotations.remove(kiln_oci::store::REF_NAME);
    store.tag(&target.store_key(), &desc)?;
    Ok(())
}

/// `kiln rmi`: removes names; an image left with no name takes its cosign tags and the
/// artifacts that refer to it (SBOMs, provenance) along.
pub fn rmi(store: &Store, args: &RmiArgs) -> Result<(), CliError> {
    let mut failed = Vec::new();
    for img in &args.images {
        let removed = match parse_image(store, img)? {
            ImageRef::Store(n) => store.untag(&n.store_key())?.map(|d| d.digest),
            ImageRef::StoreDigest(d) => (store.remove_digest(&d)? > 0).then_some(d),
            _ => {
                return Err(CliError::input(format!(
                    "kiln rmi {img}: only images in the store can be removed"
                )));
            }
        };
        match removed {
            Some(d) => {
                println!("Untagged: {img} ({d})");
                let n = remove_companions(store, &d)?;
                if n > 0 {
                    println!(
                        "Removed {n} signature, attestation and SBOM entr{} of {d}",
                        if n == 1 { "y" } else { "ies" }
                    );
                }
            }
            None => failed.push(img.clone()),
        }
    }
    if !failed.is_empty() {
        return Err(CliError::input(format!(
            "no such image in the store: {} (hint: list images with `kiln images`)",
            failed.join(", ")
        )));
    }
    Ok(())
}

/// Once no entry names `digest` any more, removes the cosign tags (`sha256-<hex>.sig`,
/// `.att`, `.sbom`, `sha256-<hex>`) and the untagged artifacts whose subject it is. Returns
/// how many index entries went.
fn remove_companions(store: &Store, digest: &kiln_oci::Digest) -> Result<usize, CliError> {
    let artifacts: BTreeSet<kiln_oci::Digest> = store.referrers(digest, None)?.into_iter().map(|d| d.digest).collect();
    let hex = digest.hex().to_string();
    Ok(store.update_index(|idx| {
        if idx.manifests.iter().any(|m| m.digest == *digest) {
            return 0;
        }
        let before = idx.manifests.len();
        idx.manifests.retain(|m| match m.ref_name() {
            Some(n) => Name::parse(n)
                .ok()
                .and_then(|n| n.tag)
                .is_none_or(|t| crate::names::cosign_subject(&t) != Some(hex.as_str())),
            None => !artifacts.contains(&m.digest),
        });
        before - idx.manifests.len()
    })?)
}

/// `kiln prune`: everything happens under the store's GC lock, so no build or pull is
/// using what is removed (they wait, or prune waits for them).
pub fn prune(store: &Store, args: &PruneArgs) -> Result<(), CliError> {
    let gc = store.lock_gc()?;
    let cache_bytes = if args.cache {
        kiln_build::snapshot::clear_cache(store, &gc)
            .map_err(|e| CliError::env(format!("clearing the build cache: {e}")))?
    } else {
        0
    };
    let (left_n, left_bytes) = kiln_build::snapshot::remove_leftovers(store, &gc);
    let roots = kiln_build::snapshot::cache_roots(store);
    let pruned = store.prune_locked(&gc, &roots)?;
    // What the SBOM cataloguer kept of layers that are now gone goes with them.
    kiln_sbom::layer_cache::sweep(store);
    let temp = pruned.temp_files + left_n;
    let temp_bytes = pruned.temp_bytes + left_bytes;
    let also = if temp > 0 {
        format!(
            " (of which {} in {temp} files and directories left by interrupted commands)",
            human_size(temp_bytes)
        )
    } else {
        String::new()
    };
    println!(
        "Deleted {} blobs, reclaimed {}{also}",
        pruned.blobs,
        human_size(pruned.bytes() + left_bytes + cache_bytes)
    );
    Ok(())
}
