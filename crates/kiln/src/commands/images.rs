//! Store management: `images`, `inspect`, `tag`, `rmi`, `prune`.

use std::collections::BTreeSet;

use kiln_oci::Store;
use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::transport::open_image;

use crate::cli::{Format, ImagesArgs, InspectArgs, PruneArgs, RmiArgs, TagArgs};
use crate::error::CliError;

/// `kiln images`.
pub fn images(store: &Store, args: &ImagesArgs) -> Result<(), CliError> {
    let index = store.index()?;
    let mut rows = Vec::new();
    for m in &index.manifests {
        // Artifacts that refer to an image (its SBOMs) are not images.
        if m.artifact_type.is_some() && m.ref_name().is_none() {
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
        let (repo, tag) = match m.ref_name().and_then(|n| Name::parse(n).ok()) {
            Some(n) => (n.repository, n.tag.unwrap_or_else(|| "<none>".into())),
            None => (m.ref_name().unwrap_or("<none>").to_string(), "<none>".to_string()),
        };
        rows.push((repo, tag, m.digest.to_string(), size, m.media_type.clone()));
    }
    rows.sort();
    match args.format {
        Format::Json => {
            let v: Vec<_> = rows
                .iter()
                .map(|(r, t, d, s, mt)| serde_json::json!({"repository": r, "tag": t, "digest": d, "size": s, "mediaType": mt}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
        Format::Table => {
            println!("{:<40} {:<16} {:<20} {:>10}", "REPOSITORY", "TAG", "DIGEST", "SIZE");
            for (r, t, d, s, _) in rows {
                let d = if args.no_trunc { d } else { d.chars().take(19).collect() };
                println!("{r:<40} {t:<16} {d:<20} {:>10}", human_size(s));
            }
        }
    }
    Ok(())
}

fn human_size(n: u64) -> String {
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
    let r = ImageRef::parse(&args.image)?;
    let platform = match &args.platform {
        Some(p) => Some(
            kiln_build::platform::parse(p)
                .ok_or_else(|| CliError::input(format!("--platform {p:?}: expected os/arch"))),
        )
        .transpose()?,
        None => None,
    };
    let opened = open_image(store, &r, platform.as_ref())?;
    let out = serde_json::json!({
        "name": args.image,
        "digest": opened.image.descriptor.digest,
        "descriptor": opened.descriptor,
        "manifest": opened.image.manifest,
        "config": opened.image.config,
    });
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    Ok(())
}

/// `kiln tag`.
pub fn tag(store: &Store, args: &TagArgs) -> Result<(), CliError> {
    let src = ImageRef::parse(&args.source)?;
    if !matches!(src, ImageRef::Store(_) | ImageRef::StoreDigest(_)) {
        return Err(CliError::input(format!(
            "kiln tag {}: the source must be in the store (hint: use kiln load or kiln copy for files)",
            args.source
        )));
    }
    let opened = open_image(store, &src, None)?;
    let target = Name::parse(&args.target)?;
    let mut desc = opened.descriptor.clone();
    desc.annotations.remove(kiln_oci::store::REF_NAME);
    store.tag(&target.store_key(), &desc)?;
    Ok(())
}

/// `kiln rmi`.
pub fn rmi(store: &Store, args: &RmiArgs) -> Result<(), CliError> {
    let mut failed = Vec::new();
    for img in &args.images {
        let removed = match ImageRef::parse(img)? {
            ImageRef::Store(n) => store.untag(&n.store_key())?.map(|d| d.digest.to_string()),
            ImageRef::StoreDigest(d) => (store.remove_digest(&d)? > 0).then(|| d.to_string()),
            _ => {
                return Err(CliError::input(format!(
                    "kiln rmi {img}: only images in the store can be removed"
                )));
            }
        };
        match removed {
            Some(d) => println!("Untagged: {img} ({d})"),
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

/// `kiln prune`.
pub fn prune(store: &Store, args: &PruneArgs) -> Result<(), CliError> {
    if args.cache {
        kiln_build::solver::clear_cache(store).map_err(|e| CliError::env(format!("clearing the build cache: {e}")))?;
    }
    let roots = kiln_build::solver::cache_roots(store);
    let (n, bytes) = store.prune(&roots)?;
    println!("Deleted {n} blobs, reclaimed {}", human_size(bytes));
    Ok(())
}
