//! `docker save` tars scanned in place: layers are read straight from the archive (no temp
//! layout, no recompression) and checked against the config's diff_ids.

use kiln_oci::layer::absolute_entry_path as normalize;
use kiln_oci::walk::LayerInput;

use crate::{Options, Report, ScanError};

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Scans a `docker save` tar in place for secrets and misconfiguration: layers are read
/// straight from the archive (no temp layout, no recompression) and checked against the
/// config's diff_ids. Vulnerability scanning needs the catalogers' layout, so callers open the
/// archive through `kiln_oci::transport` for that.
pub fn scan_docker_archive(
    path: &std::path::Path,
    reference: Option<&str>,
    name: &str,
    opts: &Options,
) -> Result<Report, ScanError> {
    use std::io::Read;
    let bad = |reason: String, hint: &'static str| ScanError::Archive {
        path: path.display().to_string(),
        reason,
        hint,
    };
    let corrupt = "the archive is damaged or not a `docker save` tar; save it again";
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string(), "check the path"))?;
    let mut ar = tar::Archive::new(file);
    let mut offsets: std::collections::HashMap<String, (u64, u64)> = Default::default();
    let mut jsons: std::collections::HashMap<String, Vec<u8>> = Default::default();
    for e in ar.entries_with_seek().map_err(|e| bad(e.to_string(), corrupt))? {
        let mut e = e.map_err(|e| bad(format!("reading the tar: {e}"), corrupt))?;
        let p = normalize(&String::from_utf8_lossy(&e.path_bytes()));
        let p = p.trim_start_matches('/').to_string();
        let (off, size) = (e.raw_file_position(), e.size());
        if p.ends_with(".json") && size < 64 << 20 {
            let mut b = Vec::with_capacity(size as usize);
            e.read_to_end(&mut b)
                .map_err(|e| bad(format!("reading {p}: {e}"), corrupt))?;
            jsons.insert(p.clone(), b);
        }
        offsets.insert(p, (off, size));
    }
    let manifests: Vec<DockerManifest> = serde_json::from_slice(
        jsons
            .get("manifest.json")
            .ok_or_else(|| bad("no manifest.json".into(), corrupt))?,
    )
    .map_err(|e| bad(format!("manifest.json: {e}"), corrupt))?;
    let m = match reference {
        Some(r) => manifests
            .iter()
            .find(|m| m.repo_tags.iter().flatten().any(|t| t == r))
            .ok_or_else(|| bad(format!("no image tagged {r:?}"), "pick one of the archive's RepoTags"))?,
        None if manifests.len() == 1 => &manifests[0],
        None => {
            return Err(bad(
                format!("holds {} images", manifests.len()),
                "append :REF (one of its RepoTags) to choose one",
            ));
        }
    };
    let config_key = normalize(&m.config).trim_start_matches('/').to_string();
    let config_bytes = match jsons.get(&config_key) {
        Some(b) => b.clone(),
        None => {
            // Newer `docker save` names blobs without an extension: read it by offset.
            use std::io::{Seek, SeekFrom};
            let (off, size) = *offsets
                .get(&config_key)
                .ok_or_else(|| bad(format!("config {} is missing", m.config), corrupt))?;
            let mut f = std::fs::File::open(path).map_err(|e| bad(e.to_string(), corrupt))?;
            let mut b = vec![0u8; size.min(64 << 20) as usize];
            f.seek(SeekFrom::Start(off))
                .and_then(|_| f.read_exact(&mut b))
                .map_err(|e| bad(format!("reading config {}: {e}", m.config), corrupt))?;
            b
        }
    };
    let config_bytes = &config_bytes;
    let config: kiln_oci::image::ImageConfig =
        serde_json::from_slice(config_bytes).map_err(|e| bad(format!("config {}: {e}", m.config), corrupt))?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != m.layers.len() {
        return Err(bad(
            format!(
                "{} layers but the config lists {} diff_ids",
                m.layers.len(),
                diff_ids.len()
            ),
            corrupt,
        ));
    }
    let mut inputs = vec![];
    for (l, d) in m.layers.iter().zip(diff_ids) {
        let key = normalize(l).trim_start_matches('/').to_string();
        let (offset, size) = *offsets
            .get(&key)
            .ok_or_else(|| bad(format!("layer {l} is missing"), corrupt))?;
        inputs.push(LayerInput::archive_entry(path, offset, size, d));
    }
    let mut report = Report::new(
        name,
        kiln_oci::Digest::sha256_of(config_bytes).to_string(),
        diff_ids.iter().map(|d| d.to_string()).collect(),
    );
    let opts = Options {
        scanners: crate::Scanners {
            vuln: false,
            ..opts.scanners
        },
        ..opts.clone()
    };
    crate::scan_layers(&mut report, inputs, &config, None, &opts)?;
    Ok(report)
}
