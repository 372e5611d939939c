//! `docker save` tars scanned in place: layers are streamed from the archive
//! ([`DockerArchive`], which indexes it and checks every layer against its diff_id), with no
//! temp layout and no recompression.

use kiln_oci::docker_archive::DockerArchive;

use crate::{Options, Report, ScanError, Scanners};

/// Scans a `docker save` tar opened in place for secrets and misconfiguration. Vulnerability
/// matching needs the catalogers' layout, so callers that want it open the archive through
/// `kiln_oci::transport` instead. The report names the image by its config digest (the
/// image ID docker gives it), and its layers by their diff_ids.
pub fn scan_docker_archive(archive: &DockerArchive, name: &str, opts: &Options) -> Result<Report, ScanError> {
    let image = &archive.image;
    let mut report = Report::new(
        name,
        image.manifest.config.digest.to_string(),
        image.manifest.layers.iter().map(|d| d.digest.to_string()).collect(),
    );
    let opts = Options {
        scanners: Scanners {
            vuln: false,
            ..opts.scanners
        },
        ..opts.clone()
    };
    crate::scan_layers(&mut report, archive.layer_inputs(), &image.config, None, &opts)?;
    Ok(report)
}
