//! The build plan: plain data, fully resolved, no I/O.
//!
//! A frontend turns what the user wrote into a [`Plan`]; the solver executes it. Every word
//! is already expanded, every base image is pinned to a digest and every stage's final
//! config is known, so `kiln build --print-plan` shows exactly what will run and the cache
//! key of a step can be computed from the plan plus the content of its inputs.

use kiln_oci::image::ImageConfig;
use kiln_oci::{Digest, Platform};
use serde::Serialize;

/// A whole build.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The platform being built.
    pub platform: Platform,
    /// SOURCE_DATE_EPOCH: the time written into configs, and the mtime clamp for layers.
    pub source_date_epoch: i64,
    /// All stages in file order; `needed` says which ones the target depends on.
    pub stages: Vec<StagePlan>,
    /// Index of the stage whose image is the result.
    pub target: usize,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Base {
    /// An empty filesystem.
    Scratch,
    /// An image, pinned by manifest digest.
    Image {
        /// The name as written after expansion.
        reference: String,
        /// The manifest digest it resolved to.
        digest: Digest,
    },
    /// An earlier stage (index into [`Plan::stages`]).
    Stage {
        /// Stage index.
        index: usize,
    },
}

/// One stage.
#[derive(Debug, Clone, Serialize)]
pub struct StagePlan {
    /// Position in the Dockerfile.
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// Line of the FROM instruction.
    pub line: usize,
    /// What it starts from.
    pub base: Base,
    /// Steps in order (ONBUILD triggers of the base first).
    pub steps: Vec<Step>,
    /// The stage's image config after all steps (rootfs and history are filled in by the
    /// solver, which is the one that knows the layers).
    pub config: ImageConfig,
    /// Whether the target depends on this stage (unused stages are skipped).
    pub needed: bool,
    /// Stages this one reads from (its base stage and `COPY --from` stages).
    pub depends_on: Vec<usize>,
}

/// One instruction's effect.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Dockerfile line (1-based) for messages.
    pub line: usize,
    /// The history `created_by` text.
    pub created_by: String,
    /// What to do.
    pub op: Op,
}

/// A step's operation. Metadata-only instructions are `Metadata`: they change only the
/// config (already folded into [`StagePlan::config`]) and add an empty-layer history entry.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Config change only.
    Metadata,
    /// `COPY` or `ADD`.
    Copy(CopyOp),
    /// `WORKDIR`: create the directory if missing.
    Mkdir(MkdirOp),
    /// `RUN` (executed by the runtime executor).
    Run(RunOp),
}

/// Where COPY reads from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CopyFrom {
    /// The build context.
    Context,
    /// An earlier stage's final filesystem.
    Stage {
        /// Stage index.
        index: usize,
    },
    /// An image, pinned.
    Image {
        /// Name as written.
        reference: String,
        /// Manifest digest.
        digest: Digest,
    },
}

/// A file written from a heredoc.
#[derive(Debug, Clone, Serialize)]
pub struct InlineFile {
    /// File name (the heredoc delimiter).
    pub name: String,
    /// Content after expansion.
    pub content: String,
}

/// `COPY`/`ADD`, fully expanded.
#[derive(Debug, Clone, Serialize)]
pub struct CopyOp {
    /// Source of the files.
    pub from: CopyFrom,
    /// Source paths or wildcards, relative to the source root.
    pub sources: Vec<String>,
    /// Heredoc files.
    pub inline: Vec<InlineFile>,
    /// Destination, absolute; a trailing `/` means "into this directory".
    pub dest: String,
    /// `--chown` value (names resolved against the stage's /etc/passwd at execution).
    pub chown: Option<String>,
    /// `--chmod` mode bits.
    pub chmod: Option<u32>,
    /// `ADD`: extract local tar archives.
    pub extract_archives: bool,
    /// `--parents`: keep source parent directories.
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// `--link`: the layer does not depend on the parent's content. kiln's copy already
    /// writes only what it copies; this is kept for the record.
    pub link: bool,
}

/// `WORKDIR` directory creation.
#[derive(Debug, Clone, Serialize)]
pub struct MkdirOp {
    /// Absolute path.
    pub path: String,
    /// The USER at that point, who owns the created directories.
    pub user: Option<String>,
}

/// `RUN`, fully resolved: argv, environment, identity, mounts.
#[derive(Debug, Clone, Serialize)]
pub struct RunOp {
    /// argv after applying SHELL to shell form (heredoc bodies folded in, as BuildKit does).
    pub args: Vec<String>,
    /// Environment: visible build args, then the config's Env (which wins on conflict).
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: String,
    /// User (`name[:group]` or ids), resolved against the rootfs at execution.
    pub user: Option<String>,
    /// Parsed and resolved `--mount`s.
    pub mounts: Vec<crate::run::mounts::RunMount>,
    /// `--network` (`default`, `none`, `host`), if given on the instruction.
    pub network: Option<String>,
    /// Heredoc scripts with a shebang, mounted read-only at `/dev/pipes/NAME` and executed.
    pub scripts: Vec<InlineFile>,
}

impl Plan {
    /// Stages in an order where every stage comes after those it depends on (file order
    /// already guarantees this, since a stage can only name earlier ones).
    pub fn needed_stages(&self) -> impl Iterator<Item = &StagePlan> {
        self.stages.iter().filter(|s| s.needed)
    }
}
