//! `kiln lock`, and `kiln build` of a kiln.toml.

use std::path::{Path, PathBuf};

use kiln_oci::Store;
use kiln_oci::layer::Compression;

use crate::cli::{LockArgs, ProgressMode};
use crate::error::CliError;
use crate::progress::Reporter;

fn debian_err(e: kiln_debian::Error) -> CliError {
    CliError {
        code: e.exit_code(),
        message: e.to_string(),
    }
}

/// Runs `kiln lock` on a kiln.toml or a Dockerfile.
pub fn lock(store: &Store, args: &LockArgs) -> Result<(), CliError> {
    let file = match &args.file {
        Some(f) => f.clone(),
        None if args.dir.is_file() => args.dir.clone(),
        None => kiln_build::spec::find_spec(&args.dir, None).unwrap_or_else(|| args.dir.join("Dockerfile")),
    };
    if file.extension().is_some_and(|e| e == "toml") {
        return lock_spec(store, args, &file);
    }
    lock_dockerfile(store, args, &file)
}

fn lock_spec(store: &Store, args: &LockArgs, spec: &Path) -> Result<(), CliError> {
    if !args.platforms.is_empty() || !args.build_args.is_empty() {
        return Err(CliError::input(format!(
            "{}: --platform and --build-arg apply to Dockerfiles (hint: a kiln.toml lists its `architectures`)",
            spec.display()
        )));
    }
    let reporter = Reporter::new(args.progress);
    let progress = |m: &str| reporter.info(m);
    let l = kiln_build::spec::lock(store, spec, args.update, &progress).map_err(debian_err)?;
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

/// `kiln lock Dockerfile`: every base image, resolved now (registry names are asked of the
/// registry, so a moved tag is seen), pinned per platform in `Dockerfile.lock`.
fn lock_dockerfile(store: &Store, args: &LockArgs, dockerfile: &Path) -> Result<(), CliError> {
    if !dockerfile.is_file() {
        return Err(CliError::input(format!(
            "{}: no Dockerfile or kiln.toml to lock (hint: give the Dockerfile, e.g. `kiln lock -f build/app.Dockerfile`)",
            dockerfile.display()
        )));
    }
    let mut platforms = Vec::new();
    for p in &args.platforms {
        platforms.push(super::parse_one_platform(p)?);
    }
    if platforms.is_empty() {
        platforms.push(kiln_plan::platform::host());
    }
    // The context only matters for messages here: base images come from the Dockerfile.
    let context = match dockerfile.parent() {
        _ if args.dir.is_dir() => args.dir.clone(),
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let req = kiln_build::build::DockerfileRequest {
        context,
        dockerfile: Some(dockerfile.to_path_buf()),
        build_args: crate::commands::build::parse_build_args(&args.build_args),
        target: None,
        platform: None,
        no_cache: false,
        compression: Compression::DEFAULT,
        source_date_epoch: Some(0),
        run: Default::default(),
        labels: vec![],
    };
    let quiet = args.progress == ProgressMode::Quiet;
    let pins = kiln_build::pins::BasePins::new(
        store,
        crate::commands::registry::progress_options(&args.registry, quiet)?,
        kiln_build::pins::PullPolicy::Always,
        None,
    );
    let lock = kiln_build::build::lock_dockerfile(&req, &platforms, &pins).map_err(|e| match &e {
        kiln_build::error::BuildError::Frontend(f) if pins.environment_failed() => {
            CliError::env(crate::commands::build::render_frontend(f))
        }
        kiln_build::error::BuildError::Frontend(f) => CliError::input(crate::commands::build::render_frontend(f)),
        _ => CliError::from(e),
    })?;
    let path = kiln_build::lockfile::for_dockerfile(dockerfile);
    let old = kiln_build::lockfile::load_if_present(&path).ok().flatten();
    if old.as_ref() == Some(&lock) {
        println!("{} is up to date ({} images)", path.display(), lock.image.len());
        return Ok(());
    }
    kiln_build::lockfile::save(&path, &lock, "Dockerfile").map_err(crate::commands::build::lock_err)?;
    let (a, r, c) = kiln_plan::lock::diff(&old.unwrap_or_default(), &lock);
    println!(
        "locked {} images in {} ({a} added, {r} removed, {c} changed)",
        lock.image.len(),
        path.display()
    );
    Ok(())
}
