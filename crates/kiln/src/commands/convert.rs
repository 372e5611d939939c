//! `kiln convert --compression zstd|gzip IMAGE -t NEW`: recompresses an image's layers. The
//! tars, and so the config and its diff_ids, stay the same; the layer digests and the
//! manifest change. Every platform of a multi-arch image is converted, under a new index.

use clap::Args;
use kiln_oci::image::ImageConfig;
use kiln_oci::layer::Compression;
use kiln_oci::opened::Scope;
use kiln_oci::reference::Name;
use kiln_oci::{Descriptor, Index, Manifest, Store, media};

use crate::error::CliError;

/// `kiln convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The image to convert (a store name, sha256:DIGEST, a file or a registry name).
    pub image: String,
    /// Layer compression of the new image: zstd, gzip or none.
    #[arg(long, value_name = "zstd|gzip|none")]
    pub compression: String,
    /// Name for the converted image.
    #[arg(short = 't', long = "tag", value_name = "NAME", required = true)]
    pub tags: Vec<String>,
    /// Registry settings, when IMAGE is read from a registry.
    #[command(flatten)]
    pub registry: crate::cli::RegistryFlags,
}

/// Converts, tags, and prints the new image's digest.
pub fn convert(store: &Store, args: &ConvertArgs) -> Result<(), CliError> {
    let compression = Compression::parse(&args.compression)
        .ok_or_else(|| CliError::input(format!("--compression {:?}: use zstd, gzip or none", args.compression)))?;
    let names = args
        .tags
        .iter()
        .map(|t| Name::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let _lease = store.lease()?;
    let registries = super::registry_access(&args.registry)?;
    let opened = super::open_image(store, &args.image, None, &registries)?;
    // Into the store first (every blob checked against its digest), then converted there.
    let top = opened.copy_into(store, Scope::All)?;
    let mut stats = Stats::default();
    let converted = convert_any(store, &args.image, &top, compression, &mut stats)?;
    for n in &names {
        store.tag(&n.store_key(), &converted)?;
    }
    eprintln!(
        "converted {} layers ({} kept), {} -> {} bytes",
        stats.converted, stats.kept, stats.bytes_before, stats.bytes_after
    );
    println!("{}", converted.digest);
    Ok(())
}

/// What a conversion did, for the summary line.
#[derive(Debug, Default)]
struct Stats {
    converted: usize,
    kept: usize,
    bytes_before: u64,
    bytes_after: u64,
}

fn convert_any(
    store: &Store,
    image: &str,
    desc: &Descriptor,
    compression: Compression,
    stats: &mut Stats,
) -> Result<Descriptor, CliError> {
    if !media::is_index(&desc.media_type) {
        return convert_manifest(store, image, desc, compression, stats);
    }
    let mut index: Index = store.read_json(&desc.digest)?;
    for child in &mut index.manifests {
        if !media::is_manifest(&child.media_type) && !media::is_index(&child.media_type) {
            continue;
        }
        let new = convert_any(store, image, child, compression, stats)?;
        child.digest = new.digest;
        child.size = new.size;
        child.media_type = new.media_type;
    }
    index.media_type = Some(media::OCI_INDEX.into());
    let bytes = kiln_oci::canonical_json(&index);
    let digest = store.put_blob(&bytes)?;
    Ok(Descriptor::new(media::OCI_INDEX, digest, bytes.len() as u64))
}

fn convert_manifest(
    store: &Store,
    image: &str,
    desc: &Descriptor,
    compression: Compression,
    stats: &mut Stats,
) -> Result<Descriptor, CliError> {
    let mut manifest: Manifest = store.read_json(&desc.digest)?;
    if manifest.artifact_type.is_some() {
        return Ok(desc.clone());
    }
    let config: ImageConfig = store.read_json(&manifest.config.digest)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(CliError::input(format!(
            "{image}: manifest {} has {} layers but its config lists {} diff_ids (hint: the image is malformed; rebuild it)",
            desc.digest,
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    for (i, layer) in manifest.layers.iter_mut().enumerate() {
        stats.bytes_before += layer.size;
        if layer.media_type == compression.media_type() {
            stats.kept += 1;
            stats.bytes_after += layer.size;
            continue;
        }
        let new = recompress(store, image, i, layer, &config.rootfs.diff_ids[i], compression)?;
        stats.converted += 1;
        stats.bytes_after += new.size;
        *layer = Descriptor {
            annotations: std::mem::take(&mut layer.annotations),
            ..new
        };
    }
    // Docker manifests cannot name zstd layers: the result is an OCI manifest.
    manifest.media_type = Some(media::OCI_MANIFEST.into());
    let bytes = kiln_oci::canonical_json(&manifest);
    let digest = store.put_blob(&bytes)?;
    let mut out = Descriptor::new(media::OCI_MANIFEST, digest, bytes.len() as u64);
    out.platform = desc.platform.clone();
    Ok(out)
}

/// One layer decompressed and compressed again; its tar must hash to the config's diff_id.
fn recompress(
    store: &Store,
    image: &str,
    i: usize,
    layer: &Descriptor,
    diff_id: &kiln_oci::Digest,
    compression: Compression,
) -> Result<Descriptor, CliError> {
    let at = format!("{image} layer {} ({})", i + 1, layer.digest);
    let blob = store.open_blob(&layer.digest)?;
    let mut tar = kiln_oci::decompress::open_layer_stream_for_media_type(blob, &layer.media_type)
        .map_err(|e| CliError::input(format!("{at}: {e} (hint: the image's layer is not a tar kiln reads)")))?;
    let info = kiln_oci::layer::recompress(store, &mut tar, compression).map_err(|e| match e {
        kiln_oci::layer::LayerError::Store(s) => CliError::from(s),
        other => CliError::input(format!(
            "{at}: {other} (hint: the layer blob is corrupt; pull the image again)"
        )),
    })?;
    if &info.diff_id != diff_id {
        return Err(CliError::input(format!(
            "{at}: its tar is {} but the config's diff_id is {diff_id} (hint: the image is corrupt; nothing was tagged)",
            info.diff_id
        )));
    }
    Ok(info.descriptor)
}
