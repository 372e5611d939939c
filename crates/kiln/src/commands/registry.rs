//! `kiln pull`, `push`, `copy`, `login`, `logout`, `referrers`, `attach`, and the registry
//! side of `kiln build` (`--pull`, `--push`, `--locked` with `Dockerfile.lock`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_build::frontend::ResolvedImage;
use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::{Descriptor, Platform, Store};
use kiln_registry::ops::Select;
use kiln_registry::{Credentials, Options, Retry, Session};

use crate::cli::{
    AttachArgs, BuildArgs, CopyArgs, Format, LoginArgs, LogoutArgs, PullArgs, PullPolicy, PushArgs, ReferrersArgs,
    RegistryFlags,
};
use crate::error::CliError;

/// Registry options from the command line.
pub fn options(flags: &RegistryFlags) -> Result<Options, CliError> {
    let credentials = match &flags.creds {
        Some(c) => Some(Credentials::parse(c).ok_or_else(|| {
            CliError::input("--creds: expected USER:PASSWORD (hint: --creds alice:s3cret)".to_string())
        })?),
        None => None,
    };
    Ok(Options {
        insecure_registries: flags.insecure_registries.clone(),
        cert_dir: flags.cert_dir.clone(),
        ca_file: flags.ca_file.clone(),
        auth_file: flags.authfile.clone(),
        credentials,
        retry: Retry {
            attempts: flags.retry_times.max(1),
            ..Retry::default()
        },
        jobs: flags.jobs.max(1),
        ..Options::default()
    })
}

fn session(flags: &RegistryFlags) -> Result<Session, CliError> {
    Ok(Session::new(options(flags)?)?)
}

/// A session that prints a line per finished blob on stderr (not with -q).
fn session_with_progress(flags: &RegistryFlags, quiet: bool) -> Result<Session, CliError> {
    let mut opts = options(flags)?;
    if !quiet {
        let p: kiln_registry::client::ProgressFn = std::sync::Arc::new(|line: &str| eprintln!("{line}"));
        opts.progress = Some(p);
    }
    Ok(Session::new(opts)?)
}

/// A name that says which registry holds it: `docker://NAME`, or a plain name whose first
/// component is a host.
pub fn registry_name(s: &str) -> Result<Name, CliError> {
    match ImageRef::parse(s)? {
        ImageRef::Registry(n) => Ok(n),
        ImageRef::Store(n) if n.registry_host().is_some() => Ok(n),
        _ => Err(CliError::input(format!(
            "{s:?} names no registry (hint: write HOST[:PORT]/REPO:TAG, e.g. 127.0.0.1:5000/app:1, or docker://NAME for Docker Hub)"
        ))),
    }
}

fn parse_platform(p: &Option<String>) -> Result<Platform, CliError> {
    match p {
        Some(p) => kiln_build::platform::parse(p).ok_or_else(|| {
            CliError::input(format!(
                "--platform {p:?}: expected os/arch[/variant] (hint: linux/arm64/v8)"
            ))
        }),
        None => Ok(kiln_build::platform::host()),
    }
}

/// `kiln pull`.
pub fn pull(store: &Store, args: &PullArgs) -> Result<(), CliError> {
    let name = registry_name(&args.image)?;
    let select = if args.all {
        Select::All
    } else {
        Select::Platform(parse_platform(&args.platform)?)
    };
    let s = session_with_progress(&args.registry, args.quiet)?;
    let pulled = s.pull(store, &name, &select, Some(&name.store_key()))?;
    if !args.quiet {
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
    let src = ImageRef::parse(&args.image)?;
    let dest = match &args.destination {
        Some(d) => registry_name(d)?,
        None => match &src {
            ImageRef::Store(n) | ImageRef::Registry(n) if n.registry_host().is_some() => n.clone(),
            _ => {
                return Err(CliError::input(format!(
                    "kiln push {}: the image's name names no registry (hint: give a destination, e.g. `kiln push {} 127.0.0.1:5000/app:1`, or tag it with a registry name)",
                    args.image, args.image
                )));
            }
        },
    };
    let src = match src {
        ImageRef::Registry(n) => ImageRef::Store(n),
        other => other,
    };
    let opened = kiln_oci::transport::open_image(store, &src, None)?;
    let s = session_with_progress(&args.registry, args.quiet)?;
    let pushed = s.push(&opened.layout, &opened.descriptor, &dest)?;
    let digest = pushed
        .descriptor
        .as_ref()
        .map(|d| d.digest.to_string())
        .unwrap_or_default();
    if let Some(f) = &args.digestfile {
        std::fs::write(f, &digest).map_err(|e| CliError::env(format!("{}: {e}", f.display())))?;
    }
    // SBOMs, provenance, signatures and attestations kept beside the image follow it.
    crate::commands::sign::push_along(&s, &opened.layout, &opened.descriptor, &dest)?;
    if !args.quiet {
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
    let src = ImageRef::parse(&args.source)?;
    let dst = ImageRef::parse(&args.destination)?;
    let select = if args.all {
        Select::All
    } else {
        Select::Platform(parse_platform(&args.platform)?)
    };
    // A host-qualified plain name is a registry on either side of copy (as in skopeo).
    let as_registry = |r: &ImageRef| match r {
        ImageRef::Registry(n) => Some(n.clone()),
        ImageRef::Store(n) if n.registry_host().is_some() => Some(n.clone()),
        _ => None,
    };
    let s = session_with_progress(&args.registry, false)?;
    let _lease = store.lease()?;
    let staging_dir = tempfile::Builder::new()
        .prefix("copy-")
        .tempdir_in({
            let t = store.tmp_dir();
            std::fs::create_dir_all(&t).map_err(|e| CliError::env(format!("{}: {e}", t.display())))?;
            t
        })
        .map_err(|e| CliError::env(format!("{}: {e}", store.tmp_dir().display())))?;
    let staging = Store::open(staging_dir.path())?;
    let digest = match (as_registry(&src), as_registry(&dst)) {
        (Some(from), Some(to)) => s
            .copy_between(&from, &to, &select, &staging)?
            .descriptor
            .map(|d| d.digest.to_string())
            .unwrap_or_default(),
        (Some(from), None) => {
            let pulled = s.pull(&staging, &from, &select, None)?;
            let names = match &dst {
                ImageRef::Store(_) => vec![],
                _ => vec![from.to_string()],
            };
            let names = if matches!(
                dst,
                ImageRef::OciDir { reference: Some(_), .. }
                    | ImageRef::OciArchive { reference: Some(_), .. }
                    | ImageRef::DockerArchive { reference: Some(_), .. }
            ) {
                vec![]
            } else {
                names
            };
            if matches!(dst, ImageRef::Store(_)) {
                kiln_oci::transport::copy_image(&staging, &pulled.image, store)?;
                kiln_oci::transport::export(store, &pulled.image, &dst, &names)?;
            } else {
                kiln_oci::transport::export(&staging, &pulled.image, &dst, &names)?;
            }
            pulled.image.digest.to_string()
        }
        (None, Some(to)) => {
            let opened = kiln_oci::transport::open_image(store, &src, platform_of(&select).as_ref())?;
            let desc = if args.all {
                &opened.descriptor
            } else {
                &opened.image.descriptor
            };
            s.push(&opened.layout, desc, &to)?
                .descriptor
                .map(|d| d.digest.to_string())
                .unwrap_or_default()
        }
        (None, None) => {
            let opened = kiln_oci::transport::open_image(store, &src, platform_of(&select).as_ref())?;
            let desc = if args.all {
                opened.descriptor.clone()
            } else {
                opened.image.descriptor.clone()
            };
            kiln_oci::transport::copy_image(&opened.layout, &desc, store)?;
            kiln_oci::transport::export(store, &desc, &dst, &[])?;
            desc.digest.to_string()
        }
    };
    eprintln!("copied {} to {}", args.source, args.destination);
    println!("{digest}");
    Ok(())
}

fn platform_of(s: &Select) -> Option<Platform> {
    match s {
        Select::Platform(p) => Some(p.clone()),
        Select::All => None,
    }
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
    let mut opts = options(&args.flags)?;
    opts.credentials = Some(creds.clone());
    let s = Session::new(opts)?;
    s.check_login(&host)?;
    let path = kiln_registry::auth::auth_file_path(args.flags.authfile.as_deref());
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

/// The lock file beside a Dockerfile: `Dockerfile` → `Dockerfile.lock`.
pub fn lock_path(dockerfile: &Path) -> PathBuf {
    let mut s = dockerfile.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Base-image resolution for `kiln build`: pulls registry images per `--pull`, records the
/// digest every FROM / COPY --from image resolved to, and checks them under `--locked`.
pub struct BasePins<'a> {
    store: &'a Store,
    flags: RegistryFlags,
    policy: PullPolicy,
    locked: bool,
    lock_file: PathBuf,
    lock: BTreeMap<String, String>,
    session: RefCell<Option<Session>>,
    pins: RefCell<BTreeMap<String, (String, bool)>>,
    quiet: bool,
}

impl<'a> BasePins<'a> {
    /// Reads the lock file (it must exist under `--locked`).
    pub fn new(store: &'a Store, args: &BuildArgs) -> Result<BasePins<'a>, CliError> {
        // Refuse a --push that cannot happen before spending time on the build.
        if args.push {
            if args.tags.is_empty() {
                return Err(CliError::input("--push needs a -t HOST/REPO:TAG to push to"));
            }
            for t in &args.tags {
                registry_name(t)?;
            }
        }
        let dockerfile = args.file.clone().unwrap_or_else(|| args.context.join("Dockerfile"));
        let lock_file = lock_path(&dockerfile);
        let lock = match std::fs::read(&lock_file) {
            Ok(d) => {
                let v: serde_json::Value = serde_json::from_slice(&d).map_err(|e| {
                    CliError::input(format!(
                        "{}: malformed JSON: {e} (hint: delete it and build without --locked to recreate it)",
                        lock_file.display()
                    ))
                })?;
                v.get("images")
                    .and_then(|i| i.as_object())
                    .map(|o| {
                        o.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.get("digest")?.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if args.locked {
                    return Err(CliError::input(format!(
                        "--locked: {} does not exist (hint: build once without --locked to pin the base images)",
                        lock_file.display()
                    )));
                }
                BTreeMap::new()
            }
            Err(e) => return Err(CliError::env(format!("{}: {e}", lock_file.display()))),
        };
        Ok(BasePins {
            store,
            flags: args.registry.clone(),
            policy: args.pull,
            locked: args.locked,
            lock_file,
            lock,
            session: RefCell::new(None),
            pins: RefCell::new(BTreeMap::new()),
            quiet: args.quiet || args.progress == crate::cli::ProgressMode::Quiet,
        })
    }

    /// The resolver handed to the build engine.
    pub fn resolve(&self, name: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let key = format!("{name} {}", kiln_build::platform::format(platform));
        let r = ImageRef::parse(name).map_err(|e| e.to_string())?;
        let remote = match &r {
            ImageRef::Registry(n) => Some(n.clone()),
            ImageRef::Store(n) if n.registry_host().is_some() => Some(n.clone()),
            _ => None,
        };
        let local_name = match &remote {
            Some(n) => n.store_key(),
            None => name.to_string(),
        };
        if let Some(n) = &remote {
            let in_store = match &n.digest {
                Some(d) => self.store.has_blob(d),
                None => self.store.resolve(&n.store_key()).ok().flatten().is_some(),
            };
            let pull = match self.policy {
                PullPolicy::Always => true,
                PullPolicy::Missing => !in_store,
                PullPolicy::Never => false,
            };
            if pull {
                let mut guard = self.session.borrow_mut();
                if guard.is_none() {
                    *guard = Some(session_with_progress(&self.flags, self.quiet).map_err(|e| e.message)?);
                }
                let s = guard.as_ref().expect("just set");
                s.pull(self.store, n, &Select::Platform(platform.clone()), Some(&n.store_key()))
                    .map_err(|e| e.to_string())?;
            } else if !in_store && self.policy == PullPolicy::Never {
                return Err(format!(
                    "{name} is not in the store and --pull=never forbids pulling it (hint: pull it first, or use --pull=missing)"
                ));
            }
        }
        let resolved = kiln_build::build::resolve_in_store(self.store, &local_name, platform)?;
        let digest = resolved.digest.to_string();
        if self.locked {
            match self.lock.get(&key) {
                Some(want) if *want == digest => {}
                Some(want) => {
                    return Err(format!(
                        "base image {name} ({}) resolves to {digest}, but {} pins {want} (hint: the tag has moved; build without --locked to accept the new digest, or pin FROM {name}@{want})",
                        kiln_build::platform::format(platform),
                        self.lock_file.display()
                    ));
                }
                None => {
                    return Err(format!(
                        "base image {name} ({}) is not pinned in {} (hint: build once without --locked to pin it)",
                        kiln_build::platform::format(platform),
                        self.lock_file.display()
                    ));
                }
            }
        }
        self.pins.borrow_mut().insert(key, (digest, remote.is_some()));
        Ok(resolved)
    }

    /// The pins as JSON for the build metadata file.
    pub fn json(&self) -> serde_json::Value {
        let pins = self.pins.borrow();
        serde_json::Value::Object(
            pins.iter()
                .map(|(k, (d, _))| (k.clone(), serde_json::json!({ "digest": d })))
                .collect(),
        )
    }

    /// Writes the lock file (not under `--locked`, which only checks). Written when a base
    /// image names a registry or the file already exists, so builds from local images
    /// only do not drop new files into their contexts.
    pub fn write_lock(&self) -> Result<(), CliError> {
        let pins = self.pins.borrow();
        if self.locked || pins.is_empty() || (!self.lock_file.exists() && !pins.values().any(|(_, remote)| *remote)) {
            return Ok(());
        }
        let mut all: BTreeMap<String, String> = self.lock.clone();
        for (k, (d, _)) in pins.iter() {
            all.insert(k.clone(), d.clone());
        }
        if all == self.lock && self.lock_file.exists() {
            return Ok(());
        }
        let doc = serde_json::json!({
            "version": 1,
            "images": all.iter().map(|(k, d)| (k.clone(), serde_json::json!({"digest": d}))).collect::<serde_json::Map<_, _>>(),
        });
        let mut data = serde_json::to_vec_pretty(&doc).expect("json");
        data.push(b'\n');
        std::fs::write(&self.lock_file, data).map_err(|e| CliError::env(format!("{}: {e}", self.lock_file.display())))
    }

    /// `kiln build --push`: pushes the image to every `-t` name that names a registry.
    pub fn push(&self, image: &Descriptor, tags: &[String]) -> Result<(), CliError> {
        if tags.is_empty() {
            return Err(CliError::input("--push needs a -t HOST/REPO:TAG to push to"));
        }
        let s = session_with_progress(&self.flags, self.quiet)?;
        for t in tags {
            let n = registry_name(t)?;
            let pushed = s.push(self.store, image, &n)?;
            eprintln!(
                "pushed {n}: {} blobs uploaded ({}), {} mounted, {} already there",
                pushed.uploaded,
                human(pushed.bytes),
                pushed.mounted,
                pushed.present
            );
            crate::commands::sign::push_along(&s, self.store, image, &n)?;
        }
        Ok(())
    }
}
