//! `kiln pull`, `push`, `copy`, `login`, `logout`, `referrers`, `attach`, and `kiln build
//! --push`.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::transport::{OpenedImage, Remote, Scope};
use kiln_oci::{Descriptor, Platform, Store};
use kiln_registry::ops::Select;
use kiln_registry::{Credentials, Options, RegistryAccess, Retry, Session};

use crate::cli::{
    AttachArgs, CopyArgs, Format, LoginArgs, LogoutArgs, ProgressMode, PullArgs, PushArgs, ReferrersArgs, RegistryFlags,
};
use crate::error::CliError;
use crate::progress::transfer::Transfers;

/// Registry options from the command line.
pub fn options(flags: &RegistryFlags) -> Result<Options, CliError> {
    let credentials = match &flags.creds {
        Some(c) => Some(Credentials::parse(c).ok_or_else(|| {
            CliError::input("--creds: expected USER:PASSWORD (hint: --creds alice:s3cret)".to_string())
        })?),
        None => None,
    };
    let c = &flags.connection;
    Ok(Options {
        insecure_registries: c.insecure_registries.clone(),
        cert_dir: c.cert_dir.clone(),
        ca_file: c.ca_file.clone(),
        auth_file: c.authfile.clone(),
        credentials,
        retry: Retry {
            attempts: c.retry_times.max(1),
            ..Retry::default()
        },
        jobs: flags.jobs.max(1),
        timeout: std::time::Duration::from_secs(flags.connection.timeout),
        ..Options::default()
    })
}

fn session(flags: &RegistryFlags) -> Result<Session, CliError> {
    Ok(Session::new(options(flags)?)?)
}

/// Registry options that print a line per finished blob on stderr (not with -q).
pub fn progress_options(flags: &RegistryFlags, quiet: bool) -> Result<Options, CliError> {
    let mode = if quiet {
        ProgressMode::Quiet
    } else {
        ProgressMode::Plain
    };
    Ok(shown_options(flags, mode)?.0)
}

/// Registry options whose transfers `mode` shows (bars, lines or nothing), and the display.
fn shown_options(flags: &RegistryFlags, mode: ProgressMode) -> Result<(Options, Option<Arc<Transfers>>), CliError> {
    let mut opts = options(flags)?;
    let shown = Transfers::new(mode);
    opts.progress = shown.as_ref().map(Transfers::sink);
    Ok((opts, shown))
}

/// A session whose transfers `mode` shows, and the display (finish it before the summary).
fn session_with_progress(
    flags: &RegistryFlags,
    mode: ProgressMode,
) -> Result<(Session, Option<Arc<Transfers>>), CliError> {
    let (opts, shown) = shown_options(flags, mode)?;
    Ok((Session::new(opts)?, shown))
}

/// `--progress`, with `-q` meaning quiet.
fn progress_mode(quiet: bool, mode: ProgressMode) -> ProgressMode {
    if quiet { ProgressMode::Quiet } else { mode }
}

/// Clears the bars of a finished transfer, so the summary line follows the lasting lines.
fn finish(shown: &Option<Arc<Transfers>>) {
    if let Some(t) = shown {
        t.finish();
    }
}

/// A name that says which registry holds it: `docker://NAME`, or a plain name whose first
/// component is a host.
pub fn registry_name(s: &str) -> Result<Name, CliError> {
    ImageRef::parse(s)?.registry_name().cloned().ok_or_else(|| {
        CliError::input(format!(
            "{s:?} names no registry (hint: write HOST[:PORT]/REPO:TAG, e.g. 127.0.0.1:5000/app:1, or docker://NAME for Docker Hub)"
        ))
    })
}

/// `--platform`, defaulting to this machine's.
fn platform_or_host(p: &Option<String>) -> Result<Platform, CliError> {
    Ok(super::parse_platform(p)?.unwrap_or_else(kiln_plan::platform::host))
}

/// `kiln pull`.
pub fn pull(store: &Store, args: &PullArgs) -> Result<(), CliError> {
    let name = registry_name(&args.image)?;
    let select = if args.all {
        Select::All
    } else {
        Select::Platform(platform_or_host(&args.platform)?)
    };
    let (s, shown) = session_with_progress(&args.registry, progress_mode(args.quiet, args.progress))?;
    let pulled = s.pull(store, &name, &select, Some(&name.store_key()))?;
    finish(&shown);
    if shown.is_some() {
        eprintln!(
            "pulled {name}: {} blobs ({}) downloaded",
            pulled.fetched,
            human(pulled.bytes)
        );
    }
    println!("{}", pulled.image.digest);
    Ok(())
}

fn human(n: u64) -> String {
    kiln_registry::repo::human_size(n)
}

/// `kiln push`.
pub fn push(store: &Store, args: &PushArgs) -> Result<(), CliError> {
    let src = crate::names::parse_image(store, &args.image)?;
    let dest = match &args.destination {
        Some(d) => registry_name(d)?,
        None => src.registry_name().cloned().ok_or_else(|| {
            CliError::input(format!(
                "kiln push {}: the image's name names no registry (hint: give a destination, e.g. `kiln push {} 127.0.0.1:5000/app:1`, or tag it with a registry name)",
                args.image, args.image
            ))
        })?,
    };
    let src = match src {
        ImageRef::Registry(n) => ImageRef::Store(n),
        other => other,
    };
    let opened = kiln_oci::transport::open_image(store, &src, None, Remote::Never)?;
    let (s, shown) = session_with_progress(&args.registry, progress_mode(args.quiet, args.progress))?;
    let pushed = s.push(opened.layout()?, &opened.descriptor, &dest)?;
    let digest = pushed
        .descriptor
        .as_ref()
        .map(|d| d.digest.to_string())
        .unwrap_or_default();
    if let Some(f) = &args.digestfile {
        std::fs::write(f, &digest).map_err(|e| CliError::env(format!("{}: {e}", f.display())))?;
    }
    // SBOMs, provenance, signatures and attestations kept beside the image follow it.
    crate::commands::sign::push_along(&s, opened.layout()?, &opened.descriptor, &dest)?;
    finish(&shown);
    if shown.is_some() {
        eprintln!(
            "pushed {dest}: {} blobs uploaded ({}), {} mounted, {} already there",
            pushed.uploaded,
            human(pushed.bytes),
            pushed.mounted,
            pushed.present
        );
    }
    println!("{digest}");
    Ok(())
}

/// `kiln copy SRC DST`.
pub fn copy(store: &Store, args: &CopyArgs) -> Result<(), CliError> {
    let src = crate::names::parse_image(store, &args.source)?;
    let dst = ImageRef::parse(&args.destination)?;
    let platform = platform_or_host(&args.platform)?;
    let (select, scope) = if args.all {
        (Select::All, Scope::All)
    } else {
        (Select::Platform(platform.clone()), Scope::Platform)
    };
    // A host-qualified plain name is a registry on either side of copy (as in skopeo).
    let as_registry = |r: &ImageRef| r.registry_name().cloned();
    let (opts, shown) = shown_options(&args.registry, args.progress)?;
    let access = RegistryAccess::new(opts);
    let _lease = store.lease()?;
    // The source is opened the one way every command opens images; for a registry it
    // reads only the manifests here.
    let want = (!args.all).then_some(&platform);
    let opened = kiln_oci::transport::open_image(store, &src, want, Remote::Always(&access))?;
    let carry = !args.remove_signatures;
    let (digest, attached) = match (as_registry(&src), as_registry(&dst)) {
        (Some(from), Some(to)) => {
            let s = access.session()?;
            // Pinned to what was opened, so the image and its signatures are the same one
            // even if the tag moves meanwhile.
            let pinned = Name {
                digest: Some(opened.descriptor.digest.clone()),
                ..from
            };
            let (staging, _dir) = store.temp_layout("copy-")?;
            let pushed = s.copy_between(&pinned, &to, &select, &staging)?;
            let attached = if carry {
                carry_attached(&s, store, &opened, scope, &to)?
            } else {
                0
            };
            (pushed.descriptor.map(|d| d.digest), attached)
        }
        (_, Some(to)) => {
            let s = access.session()?;
            let desc = opened.top(scope);
            let pushed = s.push(opened.layout()?, &desc, &to)?;
            let attached = if carry {
                kiln_sign::place::push_along(&s, opened.layout()?, &desc, &to)?
            } else {
                0
            };
            (pushed.descriptor.map(|d| d.digest), attached)
        }
        (from, None) => {
            let desc = copy_to_local(store, &opened, scope, &dst, from.as_ref())?;
            let attached = match &dst {
                ImageRef::Store(n) if carry => {
                    let a = opened.copy_attached_into(store, scope, &n.repository)?;
                    a.referrers + a.tags
                }
                _ => 0,
            };
            (Some(desc.digest), attached)
        }
    };
    finish(&shown);
    let with = match attached {
        0 => String::new(),
        n => format!(" with {n} signatures, attestations, SBOMs and other referrers"),
    };
    if shown.is_some() {
        eprintln!("copied {} to {}{with}", args.source, args.destination);
    }
    println!("{}", digest.map(|d| d.to_string()).unwrap_or_default());
    Ok(())
}

/// Registry to registry: what is attached to the source image (referrers at any depth,
/// cosign tags) is read into a temp layout and sent to the destination's repository, as
/// `oras copy -r` and `cosign copy` do. Returns how many objects were sent.
fn carry_attached(
    s: &Session,
    store: &Store,
    opened: &OpenedImage,
    scope: Scope,
    to: &Name,
) -> Result<usize, CliError> {
    let (layout, _dir) = store.temp_layout("attached-")?;
    let attached = opened.copy_attached_into(&layout, scope, &to.repository)?;
    Ok(kiln_sign::place::push_attached(
        s,
        &layout,
        &attached.subjects,
        &to.repository,
    )?)
}

/// The local half of `kiln copy`: the image goes into the store, an `oci:` layout or an
/// archive. Files with no reference of their own are named after a registry source.
fn copy_to_local(
    store: &Store,
    opened: &OpenedImage,
    scope: Scope,
    dst: &ImageRef,
    from: Option<&Name>,
) -> Result<Descriptor, CliError> {
    if matches!(dst, ImageRef::Store(_)) {
        let desc = opened.copy_into(store, scope)?;
        kiln_oci::transport::export(store, &desc, dst, &[])?;
        return Ok(desc);
    }
    let names: Vec<String> = match dst {
        ImageRef::OciDir { reference: None, .. }
        | ImageRef::OciArchive { reference: None, .. }
        | ImageRef::DockerArchive { reference: None, .. } => from.iter().map(|n| n.to_string()).collect(),
        _ => vec![],
    };
    // Files are written from a layout holding the image: the source's own, or a staging
    // layout (blobs never land in the store only to be exported).
    let (staging, _dir);
    let (layout, desc) = match opened.source().layout() {
        Some(l) => (l, opened.copy_into(l, scope)?),
        None => {
            (staging, _dir) = store.temp_layout("copy-")?;
            let desc = opened.copy_into(&staging, scope)?;
            (&staging, desc)
        }
    };
    kiln_oci::transport::export(layout, &desc, dst, &names)?;
    Ok(desc)
}

/// `kiln login`.
pub fn login(args: &LoginArgs) -> Result<(), CliError> {
    let password = match (&args.password, args.password_stdin) {
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .map_err(|e| CliError::env(format!("reading the password from stdin: {e}")))?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (Some(_), true) => {
            return Err(CliError::input("give --password or --password-stdin, not both"));
        }
        (None, false) => {
            return Err(CliError::input(
                "kiln login needs a password (hint: --password-stdin reads it from standard input)",
            ));
        }
    };
    let host = args
        .registry
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host).to_string();
    let creds = Credentials {
        username: args.username.clone(),
        password,
    };
    let mut opts = options(&args.registry_flags())?;
    opts.credentials = Some(creds.clone());
    let s = Session::new(opts)?;
    s.check_login(&host)?;
    let path = kiln_registry::auth::auth_file_path(args.connection.authfile.as_deref());
    kiln_registry::auth::store(&path, &host, &creds)?;
    eprintln!("Login Succeeded (credentials saved in {})", path.display());
    Ok(())
}

/// `kiln logout`.
pub fn logout(args: &LogoutArgs) -> Result<(), CliError> {
    let path = kiln_registry::auth::auth_file_path(args.authfile.as_deref());
    if kiln_registry::auth::remove(&path, &args.registry)? {
        eprintln!(
            "Removed login credentials for {} from {}",
            args.registry,
            path.display()
        );
        Ok(())
    } else {
        Err(CliError::input(format!(
            "not logged in to {} (no entry in {}) (hint: check the host spelling, including the port)",
            args.registry,
            path.display()
        )))
    }
}

/// `kiln referrers`.
pub fn referrers(args: &ReferrersArgs) -> Result<(), CliError> {
    let name = registry_name(&args.image)?;
    let s = session(&args.registry)?;
    let list = s.referrers(&name, args.artifact_type.as_deref())?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("descriptors serialise")
        ),
        Format::Table => {
            println!("{:<73} {:<40} SIZE", "DIGEST", "ARTIFACT TYPE");
            for d in &list {
                println!(
                    "{:<73} {:<40} {}",
                    d.digest.to_string(),
                    d.artifact_type.as_deref().unwrap_or("-"),
                    d.size
                );
            }
        }
    }
    Ok(())
}

/// `kiln attach`.
pub fn attach(store: &Store, args: &AttachArgs) -> Result<(), CliError> {
    let name = registry_name(&args.image)?;
    let mut layers = Vec::new();
    for f in &args.files {
        let (path, mt) = match f.rsplit_once(':') {
            Some((p, m)) if m.contains('/') => (p, m.to_string()),
            _ => (f.as_str(), "application/octet-stream".to_string()),
        };
        let data = std::fs::read(path).map_err(|e| CliError::input(format!("--file {path}: {e}")))?;
        layers.push((mt, data));
    }
    let mut annotations = BTreeMap::new();
    for a in &args.annotations {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| CliError::input(format!("--annotation {a:?}: expected KEY=VALUE")))?;
        annotations.insert(k.to_string(), v.to_string());
    }
    let s = session(&args.registry)?;
    let d = s.attach(store, &name, &args.artifact_type, &layers, annotations)?;
    println!("{}", d.digest);
    Ok(())
}
