//! `kiln lock`, and `kiln build` of a kiln.toml.

use std::path::Path;

use kiln_build::spec::SpecRequest;
use kiln_oci::Store;
use kiln_oci::layer::Compression;

use crate::cli::{BuildArgs, LockArgs, ProgressMode};
use crate::error::CliError;
use crate::progress::Reporter;

fn debian_err(e: kiln_debian::Error) -> CliError {
    CliError {
        code: e.exit_code(),
        message: e.to_string(),
    }
}

/// Runs `kiln lock`.
pub fn lock(store: &Store, args: &LockArgs) -> Result<(), CliError> {
    let spec = args.file.clone().unwrap_or_else(|| args.dir.join("kiln.toml"));
    let reporter = Reporter::new(args.progress);
    let progress = |m: &str| reporter.info(m);
    let l = kiln_build::spec::lock(store, &spec, args.update, &progress).map_err(debian_err)?;
    let mut arches: Vec<&str> = l.lock.package.iter().map(|p| p.arch.as_str()).collect();
    arches.dedup();
    // The summary is the command's result: stdout, like `kiln build`'s digest.
    if l.written {
        let (a, r, c) = l.changes;
        println!(
            "locked {} packages for {} in {} ({a} added, {r} removed, {c} changed)",
            l.lock.package.len(),
            arches.join(", "),
            l.path.display()
        );
    } else {
        println!(
            "{} is up to date ({} packages; `kiln lock --update` re-resolves)",
            l.path.display(),
            l.lock.package.len()
        );
    }
    Ok(())
}

/// `kiln build` when the input is a kiln.toml.
pub fn build_spec(store: &Store, args: &BuildArgs, spec: &Path) -> Result<(), CliError> {
    let compression = Compression::parse(&args.compression)
        .ok_or_else(|| CliError::input(format!("--compression {:?}: use gzip, zstd or none", args.compression)))?;
    if args.platform.is_some() || args.target.is_some() || !args.build_args.is_empty() {
        return Err(CliError::input(format!(
            "{}: --platform, --target and --build-arg apply to Dockerfiles (hint: a kiln.toml lists its `architectures`)",
            spec.display()
        )));
    }
    let reporter = Reporter::new(if args.quiet { ProgressMode::Quiet } else { args.progress });
    let progress = |m: &str| reporter.info(m);
    let timing = kiln_sign::provenance::Timing::start();
    let req = SpecRequest {
        spec: spec.to_path_buf(),
        tags: args.tags.clone(),
        compression,
        source_date_epoch: args.source_date_epoch,
        locked: args.locked,
        no_cache: args.no_cache,
    };
    if args.print_plan {
        let plan = kiln_build::spec::plan(store, &req, &progress).map_err(debian_err)?;
        println!("{}", serde_json::to_string_pretty(&plan).expect("plans serialise"));
        return Ok(());
    }
    let built = kiln_build::spec::build(store, &req, &progress).map_err(debian_err)?;
    let digest = built.index.digest.to_string();
    if args.sbom {
        // One SBOM per architecture's image (the index's children are the subjects).
        for (_, image) in &built.manifests {
            let b = crate::commands::sbom::BuildSbom {
                image,
                stages: vec![],
                source_date_epoch: args.source_date_epoch,
            };
            crate::commands::sbom::attach_to_build(store, &b, &|w| reporter.info(&format!("warning: {w}")))?;
        }
    }
    if let Some(f) = &args.iidfile {
        std::fs::write(f, &digest).map_err(|e| CliError::env(format!("{}: {e}", f.display())))?;
    }
    if let Some(f) = &args.metadata_file {
        let meta = serde_json::json!({
            "containerimage.digest": digest,
            "containerimage.descriptor": built.index,
            "image.name": args.tags.join(","),
            "manifests": built.manifests.iter().map(|(arch, d)| serde_json::json!({"architecture": arch, "digest": d.digest.to_string()})).collect::<Vec<_>>(),
            "layers": { "cached": built.layers_cached, "built": built.layers_built },
            "downloaded": built.downloaded,
        });
        std::fs::write(f, serde_json::to_vec_pretty(&meta).expect("json"))
            .map_err(|e| CliError::env(format!("{}: {e}", f.display())))?;
    }
    let lock = kiln_debian::Lock::load(&kiln_build::spec::lock_path(spec)).map_err(debian_err)?;
    let sde = args
        .source_date_epoch
        .or_else(|| {
            kiln_build::build::git_info(
                spec.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )
            .0
        })
        .unwrap_or(0);
    let provenance = kiln_sign::provenance::spec(spec, &lock, sde, &timing)?;
    crate::commands::sign::after_build(store, &args.trust, &args.tags, &built.index, provenance)?;
    if !args.outputs.is_empty() {
        return Err(CliError::input(
            "--output is not supported for kiln.toml builds yet (hint: the image is in the store; use `kiln save`)",
        ));
    }
    reporter.info(&format!(
        "built {digest}{} ({} architectures; {} package layers cached, {} built; {} .debs downloaded)",
        if args.tags.is_empty() {
            String::new()
        } else {
            format!(" as {}", args.tags.join(", "))
        },
        built.manifests.len(),
        built.layers_cached,
        built.layers_built,
        built.downloaded
    ));
    println!("{digest}");
    Ok(())
}
