//! Command-line definitions. Flag names follow docker build and buildah; see docs/.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kiln: build, store and ship trusted, reproducible container images.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Store location (an OCI image layout). Default: $KILN_HOME, /var/lib/kiln for root,
    /// ~/.local/share/kiln otherwise.
    // KILN_HOME is read by Store::default_root, not by clap: an `env =` value would make
    // clap print `--root <DIR>` in every usage line as if it had been typed.
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Commands,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Build an image from a Dockerfile and a context directory.
    Build(Box<BuildArgs>),
    /// Write a cosign-format key pair (cosign.key encrypted with COSIGN_PASSWORD or a prompt, cosign.pub).
    GenerateKeyPair(crate::commands::sign::GenerateKeyPairArgs),
    /// Sign an image's digest: cosign's sha256-<hex>.sig and a Sigstore bundle referrer.
    Sign(crate::commands::sign::SignArgs),
    /// Sign an in-toto attestation (DSSE) about an image: the sha256-<hex>.att tag and a bundle referrer.
    Attest(crate::commands::sign::AttestArgs),
    /// Verify an image's signatures with a public key (key-based only; no keyless).
    Verify(crate::commands::sign::VerifyArgs),
    /// Verify an image's attestations of one predicate type with a public key.
    VerifyAttestation(crate::commands::sign::VerifyAttestationArgs),
    /// Decide whether images may ship by a policy file (signatures, attestations, CVEs, config, Rego).
    Policy(crate::commands::policy::PolicyArgs),
    /// Run the Kubernetes admission webhook (HTTPS), or print its manifests.
    Serve(Box<crate::commands::serve::ServeArgs>),
    /// Send an image's build record (provenance, SBOMs) to a kiln serve.
    Record(crate::commands::record::RecordArgs),
    /// List images in the store.
    Images(ImagesArgs),
    /// Show an image's manifest and config as JSON, or fields of it (--format).
    Inspect(InspectArgs),
    /// Show how an image's layers were made (its config's history).
    History(HistoryArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Remove image names (and unreferenced content with a later `kiln prune`).
    Rmi(RmiArgs),
    /// Delete blobs that no image (and, unless --cache, no cache record) references.
    Prune(PruneArgs),
    /// Load images from an oci-archive or a `docker save` tar.
    Load(LoadArgs),
    /// Write an image to an oci-archive or docker-archive tar.
    Save(SaveArgs),
    /// List or remove the directories behind RUN --mount=type=cache.
    Cache(CacheArgs),
    /// Resolve a kiln.toml's Debian packages and write kiln.lock beside it.
    Lock(LockArgs),
    /// Download an image from a registry into the store.
    Pull(PullArgs),
    /// Upload an image from the store to a registry.
    Push(PushArgs),
    /// Copy an image between registries, the store, oci:, oci-archive: and docker-archive:.
    Copy(CopyArgs),
    /// Recompress an image's layers (zstd, gzip): same diff_ids, new layer digests and manifest.
    Convert(crate::commands::convert::ConvertArgs),
    /// Save registry credentials in config.json (checked against the registry first).
    Login(LoginArgs),
    /// Remove registry credentials from config.json.
    Logout(LogoutArgs),
    /// List the artifacts (signatures, SBOMs…) that refer to an image in a registry.
    Referrers(ReferrersArgs),
    /// Push an artifact that refers to an image in a registry (its `subject`).
    Attach(AttachArgs),
    /// List every package in an image (SPDX 2.3, CycloneDX 1.6, a table or JSON).
    Sbom(SbomArgs),
    /// Check Dockerfiles for unpinned inputs, secrets, root and other mistakes.
    Lint(LintArgs),
    /// Scan an image for vulnerable packages, secrets (in every layer) and misconfiguration.
    Scan(Box<crate::commands::scan::ScanArgs>),
    /// Manage the offline OSV vulnerability database `kiln scan` uses.
    Db(crate::commands::scan::DbArgs),
    /// Run an image immutable: read-only rootfs, its non-root USER, no capabilities, tmpfs where it writes.
    Run(Box<crate::commands::run::RunArgs>),
    /// List containers started with `kiln run -d`.
    Ps(crate::commands::run::PsArgs),
    /// Stop and remove containers started with `kiln run -d`.
    Stop(crate::commands::run::StopArgs),
    /// Print the output of a container started with `kiln run -d`.
    Logs(crate::commands::run::LogsArgs),
    /// Per-layer sizes and changes, wasted bytes and efficiency (as dive computes them), CI thresholds.
    Analyze(Box<crate::commands::analyze::AnalyzeArgs>),
    /// Compare two images: config, files, packages, vulnerabilities introduced and fixed, shared layers.
    Diff(Box<crate::commands::diff::DiffArgs>),
    /// Print Kubernetes, Compose or JSON settings that run an image immutable.
    Harden(crate::commands::harden::HardenArgs),
    /// Serves a detached container's published ports (started by `kiln run -d -p`).
    #[command(name = "__publish", hide = true)]
    Publish(crate::commands::run::PublishArgs),
    /// Show kiln's version, the commit it was built from and its enabled features.
    Version(VersionArgs),
    /// Show where the store is and what kiln runs with here (runtime, user namespace).
    Info(InfoArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completion(CompletionArgs),
}

/// Subcommands that never touch the store: `--root` means nothing to them, so their help
/// does not list it.
const STORELESS: &[&str] = &["lint", "login", "logout", "generate-key-pair", "version", "completion"];

/// The command-line definition, with `--root` hidden where it does nothing.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    for name in STORELESS {
        // A subcommand's own argument with the global's id stops clap propagating the
        // global one into it; this one is accepted (so scripts that always pass --root keep
        // working) but hidden.
        cmd = cmd.mut_subcommand(name, |sc| {
            sc.arg(
                clap::Arg::new("root")
                    .long("root")
                    .value_name("DIR")
                    .value_parser(clap::value_parser!(PathBuf))
                    .hide(true),
            )
        });
    }
    cmd
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A bar per step on a terminal, plain lines otherwise.
    Auto,
    /// One line per step.
    Plain,
    /// Bars (even when not on a terminal).
    Tty,
    /// Nothing but errors.
    Quiet,
}

/// `kiln build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Name and optionally tag the image (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Dockerfile path (default: CONTEXT/Dockerfile); `-` reads it from standard input.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Set a label on the image (KEY=VALUE, repeatable); it overrides a LABEL of the same key.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage (and what it needs) instead of the last one.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Target platform(s) (os/arch[/variant], comma-separated for one index of several);
    /// default: this machine's.
    #[arg(long)]
    pub platform: Option<String>,
    /// Write the image ID (manifest digest) to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write build metadata (JSON: digests, layers) to this file.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Send the build record (provenance, SBOMs) to this kiln serve (token: $KILN_RECORD_TOKEN, CA: $KILN_RECORD_CA).
    #[arg(long, value_name = "URL")]
    pub record: Option<String>,
    /// Also export the image: type=oci,dest=PATH[,tar=false] or type=docker,dest=FILE.
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Progress output.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Print only the image digest (same as --progress quiet).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Layer compression: gzip (default), zstd or none.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Timestamp for reproducible builds (seconds since the epoch). Default: the context's
    /// git commit time, or 0 outside git.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,
    /// Push every -t name that names a registry after the build.
    #[arg(long)]
    pub push: bool,
    /// When to pull FROM images that name a registry: --pull (always), --pull=missing (default), --pull=never.
    #[arg(long, value_enum, default_value = "missing", num_args = 0..=1, require_equals = true, default_missing_value = "always")]
    pub pull: PullPolicy,
    /// Registry connection settings (for --pull and --push).
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Fail if a base image resolves to a digest other than the one in Dockerfile.lock
    /// (and, for kiln.toml builds, if kiln.lock disagrees with kiln.toml).
    #[arg(long, conflicts_with = "write_lock")]
    pub locked: bool,
    /// Write the base images' digests to Dockerfile.lock beside the Dockerfile (a build
    /// writes no file otherwise; `kiln lock` does the same without building).
    #[arg(long)]
    pub write_lock: bool,
    /// Print the resolved build plan as JSON and exit without building.
    #[arg(long)]
    pub print_plan: bool,
    /// Secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR. Never stored.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    pub secrets: Vec<String>,
    /// SSH agent for RUN --mount=type=ssh: default (uses $SSH_AUTH_SOCK) or ID=SOCKET.
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET]")]
    pub ssh: Vec<String>,
    /// Network for RUN steps: default (own network namespace, outbound access through a
    /// user-mode network), none (loopback only) or host (needs --allow network.host).
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Grant an entitlement, as docker buildx build: network.host lets --network=host and
    /// RUN --network=host use the host's network namespace.
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// OCI runtime for RUN steps: runc, crun or a path (default: crun as root where it can run steps, else runc).
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<String>,
    /// Signing and digest tags (--sign, --key, --tag-digest).
    #[command(flatten)]
    pub trust: crate::commands::sign::BuildTrustFlags,
    /// Keep files that package managers rewrite on every run (see docs/build.md).
    #[arg(long)]
    pub keep_volatile: bool,
    /// Catalogue the image and attach SPDX and CycloneDX SBOMs to it (--sbom=false skips).
    #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub sbom: bool,
    /// Also catalogue builder stages; their packages are marked build-time only.
    #[arg(long)]
    pub sbom_stages: bool,
    /// Export the build cache: type=registry,ref=REF[,mode=min|max], type=local,dest=DIR[,mode=min|max]
    /// or type=inline (repeatable; see docs/build.md).
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Use a build cache: type=registry,ref=REF (a cache, or an image built with
    /// --cache-to type=inline) or type=local,src=DIR (repeatable; the first match wins).
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Every input must be pinned (base images by digest or in Dockerfile.lock, ADD of a URL
    /// with --checksum) and no step gets a network.
    #[arg(long)]
    pub hermetic: bool,
    /// For each step that runs, say why it missed the cache (which input changed).
    #[arg(long)]
    pub explain_cache: bool,
}

/// Output format for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

/// `kiln images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images of this repository (REPOSITORY or REPOSITORY:TAG; `*` matches within a name).
    pub reference: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Show full digests.
    #[arg(long)]
    pub no_trunc: bool,
    /// Print only image digests, one per image.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Also show cosign's signature and attestation tags (`sha256-<hex>.sig`, `.att`).
    #[arg(short = 'a', long)]
    pub all: bool,
}

/// `kiln inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image: a store name, a digest or unique digest prefix, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE, HOST/REPO:TAG or docker://NAME.
    pub image: String,
    /// Platform to pick from a multi-arch image.
    #[arg(long)]
    pub platform: Option<String>,
    /// `json` (the default), or a template such as '{{.Digest}}' or '{{json .Config.Env}}'
    /// (see docs/images.md for the fields and functions).
    #[arg(short = 'f', long, value_name = "json|TEMPLATE")]
    pub format: Option<String>,
    /// Registry settings (for images read from a registry).
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Image, named as for `kiln inspect`.
    pub image: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Do not shorten digests and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Platform to pick from a multi-arch image.
    #[arg(long)]
    pub platform: Option<String>,
    /// Registry settings (for images read from a registry).
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `kiln info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// `json`, or a template such as '{{.Store}}' (fields: Store, StoreExists, Runtime,
    /// Rootless, UserNamespace, VulnerabilityDatabase, Version); default: a table.
    #[arg(short = 'f', long, value_name = "json|TEMPLATE")]
    pub format: Option<String>,
}

/// `kiln completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// Shells `kiln completion` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// bash (source it, or put it in /etc/bash_completion.d/kiln).
    Bash,
    /// zsh (put it in a directory of $fpath as _kiln).
    Zsh,
    /// fish (put it in ~/.config/fish/completions/kiln.fish).
    Fish,
}

/// `kiln tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image (name or sha256:DIGEST).
    pub source: String,
    /// New name.
    pub target: String,
}

/// `kiln rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Names or digests to remove.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `kiln prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also drop the build cache (cache records and unpacked layers).
    #[arg(long)]
    pub cache: bool,
}

/// `kiln load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Archive to read (oci-archive or docker-archive tar); standard input if absent or `-`.
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print only the loaded digests.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Progress output: bars on a terminal (auto), what load printed before (plain), bars
    /// even when not on a terminal (tty), or nothing (quiet).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

/// Archive format for `kiln save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    /// OCI image layout in a tar.
    OciArchive,
    /// `docker save` format.
    DockerArchive,
}

/// `kiln save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// File to write; standard output if absent or `-` (not a terminal).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive format.
    #[arg(long, value_enum, default_value = "oci-archive")]
    pub format: SaveFormat,
    /// Progress output: bars on a terminal (auto), no bar (plain), bars
    /// even when not on a terminal (tty), or nothing (quiet).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Image to save.
    pub image: String,
}

/// When `kiln build` pulls base images that name a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    /// Always ask the registry (a moved tag is followed).
    Always,
    /// Pull only images not in the store.
    Missing,
    /// Never pull: the store must have it.
    Never,
}

/// Flags shared by every command that talks to a registry.
#[derive(Debug, Clone, Args)]
pub struct RegistryFlags {
    /// How to reach the registry.
    #[command(flatten)]
    pub connection: ConnectionFlags,
    /// Credentials to use instead of the file.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// Blobs transferred at once.
    #[arg(long, value_name = "N", default_value = "6")]
    pub jobs: usize,
}

/// How to reach a registry and where credentials are kept: what `kiln login` takes too.
#[derive(Debug, Clone, Args)]
pub struct ConnectionFlags {
    /// Credentials file (default: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json).
    #[arg(long, value_name = "FILE", global = false)]
    pub authfile: Option<PathBuf>,
    /// Directory of CA certificates (*.crt) and client certificates (*.cert, *.key).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// A CA certificate bundle (PEM) to trust for the registry.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Allow plain HTTP to this registry (HOST[:PORT]); loopback registries always may.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Attempts per request before giving up on a failing registry.
    #[arg(long, value_name = "N", default_value = "6")]
    pub retry_times: u32,
    /// Give up on a registry after this many seconds without progress (no answer, no byte
    /// moving), whatever the retries left; a slow transfer that moves is never cut.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// `kiln pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image: HOST/REPO:TAG, HOST/REPO@sha256:…, or docker://NAME.
    pub image: String,
    /// Platform to take from a multi-arch image (os/arch[/variant]); default: this machine's.
    #[arg(long)]
    pub platform: Option<String>,
    /// Take every platform of a multi-arch image.
    #[arg(long)]
    pub all: bool,
    /// Print only the digest.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Progress output: bars on a terminal (auto), one line per finished blob (plain), bars
    /// even when not on a terminal (tty), or nothing (quiet).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Image to push: a store name (HOST/REPO:TAG goes to HOST), sha256:DIGEST, or any transport.
    pub image: String,
    /// Where to push it (default: IMAGE's own name): HOST/REPO:TAG or docker://NAME.
    pub destination: Option<String>,
    /// Write the pushed manifest digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Print only the digest.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Progress output: bars on a terminal (auto), one line per finished blob (plain), bars
    /// even when not on a terminal (tty), or nothing (quiet).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source: docker://NAME, HOST/REPO:TAG, a store name, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE.
    pub source: String,
    /// Destination, in the same forms.
    pub destination: String,
    /// Copy every platform of a multi-arch image (default: this machine's, or --platform).
    #[arg(long)]
    pub all: bool,
    /// Platform to take from a multi-arch source.
    #[arg(long)]
    pub platform: Option<String>,
    /// Leave the image's signatures, attestations, SBOMs and other referrers behind (skopeo's flag; by default they are copied, as `oras copy -r` and `cosign copy` do).
    #[arg(long, alias = "no-referrers")]
    pub remove_signatures: bool,
    /// Progress output: bars on a terminal (auto), one line per finished blob (plain), bars
    /// even when not on a terminal (tty), or nothing (quiet).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host (HOST[:PORT]).
    pub registry: String,
    /// User name.
    #[arg(short = 'u', long)]
    pub username: String,
    /// Password (prefer --password-stdin: arguments are visible to other users).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry connection settings (--authfile is where the credentials are written).
    #[command(flatten)]
    pub connection: ConnectionFlags,
}

impl LoginArgs {
    /// The connection settings login uses, as the registry flags every other command takes
    /// (login has no --creds or --jobs: it checks the credentials it is given, one request).
    pub fn registry_flags(&self) -> RegistryFlags {
        RegistryFlags {
            connection: self.connection.clone(),
            creds: None,
            jobs: 1,
        }
    }
}

/// `kiln logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host (HOST[:PORT]).
    pub registry: String,
    /// Credentials file (default as for login).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

/// `kiln referrers`.
#[derive(Debug, Args)]
pub struct ReferrersArgs {
    /// Image in a registry: HOST/REPO:TAG, HOST/REPO@sha256:…, or docker://NAME.
    pub image: String,
    /// Only artifacts of this type.
    #[arg(long, value_name = "TYPE")]
    pub artifact_type: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The image the artifact refers to (its subject), in a registry.
    pub image: String,
    /// The artifact's type (a media type, e.g. application/spdx+json).
    #[arg(long, value_name = "TYPE")]
    pub artifact_type: String,
    /// Files to attach as the artifact's blobs: PATH or PATH:MEDIA_TYPE (repeatable).
    #[arg(long = "file", value_name = "PATH[:MEDIA_TYPE]", required = true)]
    pub files: Vec<String>,
    /// Annotation KEY=VALUE for the artifact manifest (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// A kiln.toml or a Dockerfile, or a directory holding one (kiln.toml when it has no Dockerfile).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The kiln.toml or Dockerfile (default: found in DIR).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// kiln.toml: re-resolve every package against the archives now, even if the lock is current.
    #[arg(long)]
    pub update: bool,
    /// Dockerfile: a platform to pin base images for (repeatable; default: this machine's).
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    pub platforms: Vec<String>,
    /// Dockerfile: a build-time variable, as for `kiln build` (FROM may use ARGs).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Registry connection settings (base images that name a registry are resolved there).
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Progress output.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

/// `kiln cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// `kiln cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List cache mounts with their sizes.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Remove cache mounts by id.
    Rm {
        /// Cache ids (the id= of the mount, or its target when it had none).
        ids: Vec<String>,
        /// Remove every cache mount.
        #[arg(long)]
        all: bool,
    },
}

/// `kiln lint` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LintFormat {
    /// One `file:line:col: severity[KL###] message` line per finding.
    Human,
    /// A JSON document with every finding.
    Json,
    /// SARIF 2.1.0 (GitHub code scanning and other SARIF viewers).
    Sarif,
}

/// `kiln lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Dockerfiles to check (default: ./Dockerfile); a directory means its Dockerfile, `-` stdin.
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: LintFormat,
    /// Report findings at or above this severity, and exit 1 if there are any
    /// (default: warning, or `severity` in .kiln-lint.toml).
    #[arg(long, value_name = "error|warning|info")]
    pub severity: Option<String>,
    /// Configuration file (default: .kiln-lint.toml next to the Dockerfile or in a parent).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// SBOM output formats (syft's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    SpdxJson,
    /// CycloneDX 1.6 JSON.
    CyclonedxJson,
    /// Aligned columns.
    Table,
    /// kiln's own JSON model.
    Json,
}

/// `kiln sbom`.
#[derive(Debug, Args)]
pub struct SbomArgs {
    /// Image: a store name, sha256:DIGEST, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE, HOST/REPO:TAG or docker://NAME.
    pub image: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: SbomFormat,
    /// Write the SBOM to this file instead of standard output.
    #[arg(long, value_name = "OUT")]
    pub file: Option<PathBuf>,
    /// Platform to pick from a multi-arch image (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// Registry settings (for images read from a registry).
    #[command(flatten)]
    pub registry: RegistryFlags,
}
