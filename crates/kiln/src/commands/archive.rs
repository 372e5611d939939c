//! `kiln load` and `kiln save`, from and to files or standard input and output.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use kiln_oci::Store;
use kiln_oci::reference::ImageRef;
use kiln_oci::transport::{Remote, Scope, export, open_image};

use crate::cli::{LoadArgs, ProgressMode, SaveArgs, SaveFormat};
use crate::error::CliError;
use crate::progress::archive::ArchiveProgress;

/// `-` or nothing means standard input or output.
fn named_file(p: &Option<PathBuf>) -> Option<&Path> {
    p.as_deref().filter(|p| *p != Path::new("-"))
}

/// `--progress`, with `-q` meaning quiet.
fn progress(quiet: bool, mode: ProgressMode) -> ProgressMode {
    if quiet { ProgressMode::Quiet } else { mode }
}

/// The file an archive destination writes.
fn dest_path(dest: &ImageRef) -> &Path {
    match dest {
        ImageRef::OciArchive { path, .. } | ImageRef::DockerArchive { path, .. } => path,
        _ => Path::new(""),
    }
}

/// A temp dir in the store's temp dir (same filesystem as the blobs) for an archive
/// streamed from standard input or to standard output.
fn spool(store: &Store) -> Result<(tempfile::TempDir, PathBuf), CliError> {
    let tmp = store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(|e| CliError::env(format!("{}: {e}", tmp.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("archive-")
        .tempdir_in(&tmp)
        .map_err(|e| CliError::env(format!("{}: {e}", tmp.display())))?;
    let path = dir.path().join("archive.tar");
    Ok((dir, path))
}

/// `kiln load [-i FILE]`: prints each loaded image's names (or digest) as docker does.
pub fn load(store: &Store, args: &LoadArgs) -> Result<(), CliError> {
    // An archive is read by offset (entries in any order), so standard input is spooled
    // to a temp file first.
    let (_spooled, path) = match named_file(&args.input) {
        Some(p) if !p.exists() => {
            return Err(CliError::input(format!(
                "{}: no such file (hint: give the archive `kiln save`, `docker save` or `skopeo copy` wrote, or pipe it in: kiln load < FILE)",
                p.display()
            )));
        }
        Some(p) => (None, p.to_path_buf()),
        None => {
            if std::io::stdin().is_terminal() {
                return Err(CliError::input(
                    "kiln load reads an archive from standard input, which is a terminal (hint: kiln load -i FILE, or kiln load < FILE)",
                ));
            }
            let (dir, p) = spool(store)?;
            let mut f = std::fs::File::create(&p).map_err(|e| CliError::env(format!("{}: {e}", p.display())))?;
            std::io::copy(&mut std::io::stdin().lock(), &mut f)
                .map_err(|e| CliError::env(format!("reading the archive from standard input: {e}")))?;
            (Some(dir), p)
        }
    };
    let shown = ArchiveProgress::new(progress(args.quiet, args.progress), "loading", &path, false);
    let loaded = kiln_oci::archive::load(store, &path)?;
    drop(shown);
    for l in loaded {
        if args.quiet {
            println!("{}", l.descriptor.digest);
            continue;
        }
        if l.names.is_empty() {
            println!("Loaded image ID: {}", l.descriptor.digest);
        }
        for n in &l.names {
            println!("Loaded image: {n} ({})", l.descriptor.digest);
        }
    }
    Ok(())
}

/// `kiln save [-o FILE] IMAGE`.
pub fn save(store: &Store, args: &SaveArgs) -> Result<(), CliError> {
    let to_stdout = named_file(&args.output).is_none();
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(CliError::input(
            "kiln save would write a tar to the terminal (hint: kiln save -o FILE IMAGE, or redirect: kiln save IMAGE > FILE)",
        ));
    }
    let src = crate::names::parse_image(store, &args.image)?;
    let opened = open_image(store, &src, None, Remote::Never)?;
    let names: Vec<String> = match &src {
        ImageRef::Store(n) => vec![n.store_key()],
        _ => vec![],
    };
    let spooled = if to_stdout { Some(spool(store)?) } else { None };
    let path = match (&spooled, named_file(&args.output)) {
        (Some((_, p)), _) => p.clone(),
        (None, Some(p)) => p.to_path_buf(),
        (None, None) => unreachable!("stdout is spooled"),
    };
    let dest = match args.format {
        SaveFormat::OciArchive => ImageRef::OciArchive { path, reference: None },
        SaveFormat::DockerArchive => ImageRef::DockerArchive { path, reference: None },
    };
    let shown = ArchiveProgress::new(progress(false, args.progress), "saving", dest_path(&dest), true);
    let desc = opened.copy_into(store, Scope::All)?;
    export(store, &desc, &dest, &names)?;
    drop(shown);
    if let Some((_dir, p)) = spooled {
        let mut file = std::fs::File::open(&p).map_err(|e| CliError::env(format!("{}: {e}", p.display())))?;
        let mut out = std::io::stdout().lock();
        match std::io::copy(&mut file, &mut out) {
            Ok(_) => {}
            // The reader went away (`kiln save IMG | head -c1`): stop quietly, as other tools do.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
            Err(e) => return Err(CliError::env(format!("writing the archive to standard output: {e}"))),
        }
    }
    Ok(())
}
