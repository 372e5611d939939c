//! Command-line definitions. Flag names follow docker build and buildah; see docs/.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kiln: build, store and ship trusted, reproducible container images.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Store location (an OCI image layout). Default: $KILN_HOME, /var/lib/kiln for root,
    /// ~/.local/share/kiln otherwise.
    #[arg(long, global = true, env = "KILN_HOME", value_name = "DIR")]
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
    /// List images in the store.
    Images(ImagesArgs),
    /// Show an image's manifest and config as JSON.
    Inspect(InspectArgs),
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
    /// Dockerfile path (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage (and what it needs) instead of the last one.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Target platform (os/arch[/variant]); default: this machine's.
    #[arg(long)]
    pub platform: Option<String>,
    /// Write the image ID (manifest digest) to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write build metadata (JSON: digests, layers) to this file.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
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
    /// Print the resolved build plan as JSON and exit without building.
    #[arg(long)]
    pub print_plan: bool,
    /// Secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR. Never stored.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    pub secrets: Vec<String>,
    /// SSH agent for RUN --mount=type=ssh: default (uses $SSH_AUTH_SOCK) or ID=SOCKET.
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET]")]
    pub ssh: Vec<String>,
    /// Network for RUN steps: default, none or host.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// OCI runtime for RUN steps: runc, crun or a path (default: runc if installed).
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<String>,
    /// Keep files that package managers rewrite on every run (see docs/build.md).
    #[arg(long)]
    pub keep_volatile: bool,
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
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Show full digests.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `kiln inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image: a store name, sha256:DIGEST, oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE.
    pub image: String,
    /// Platform to pick from a multi-arch image.
    #[arg(long)]
    pub platform: Option<String>,
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
    /// Archive to read (oci-archive or docker-archive tar).
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: PathBuf,
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
    /// File to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Archive format.
    #[arg(long, value_enum, default_value = "oci-archive")]
    pub format: SaveFormat,
    /// Image to save.
    pub image: String,
}
