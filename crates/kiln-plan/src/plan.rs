//! The build plan: plain data, fully resolved, no I/O.
//!
//! A frontend turns what the user wrote into a [`Plan`]; the solver executes it. Every word
//! is already expanded, every base image is pinned to a digest and every stage's final
//! config is known, so `kiln build --print-plan` shows exactly what will run and the cache
//! key of a step can be computed from the plan plus the content of its inputs.

use kiln_oci::image::ImageConfig;
use kiln_oci::{Digest, Platform};
use serde::{Deserialize, Serialize};

use crate::inputs::Inputs;
use crate::lock::LockedPackage;

/// A whole build as `kiln build --print-plan` shows it, whichever frontend made it: what it
/// was made from, and one [`Plan`] per platform (a Dockerfile build has one; a kiln.toml
/// one per architecture, joined into an index).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildPlan {
    /// The user's files, lock, commit and arguments.
    pub inputs: Inputs,
    /// One plan per platform, in the order the result lists them.
    pub platforms: Vec<Plan>,
}

/// The build of one platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The platform being built.
    pub platform: Platform,
    /// SOURCE_DATE_EPOCH: the time written into configs, and the mtime clamp for layers.
    pub source_date_epoch: i64,
    /// The `comment` of every history entry the steps add (`kiln` for Dockerfile builds;
    /// none for kiln.toml images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_comment: Option<String>,
    /// All stages in file order; `needed` says which ones the target depends on.
    pub stages: Vec<StagePlan>,
    /// Index of the stage whose image is the result.
    pub target: usize,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Debian packages, each .deb's files and dpkg record as they would be installed
    /// (no maintainer scripts run). The layer depends on the packages alone, never on what
    /// is below it, so it is shared by every image that installs the same packages.
    Debian(DebianOp),
    /// Files given in full by the frontend (kiln.toml's accounts and `files`).
    Files(FilesOp),
}

/// Debian packages for one layer, pinned by sha256 (from kiln.lock).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DebianOp {
    /// The packages, in layer order.
    pub packages: Vec<LockedPackage>,
}

/// A layer written entry by entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilesOp {
    /// The entries, sorted by path; parents come before their children.
    pub entries: Vec<FileEntry>,
}

/// One entry of a [`FilesOp`]; its mtime is SOURCE_DATE_EPOCH.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path in the image, relative to `/` (`etc/passwd`).
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// What a [`FileEntry`] is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A file with this text.
    File {
        /// Content.
        content: String,
    },
    /// A file copied from the build's directory (the kiln.toml's), whose content enters
    /// the step's cache key.
    Context {
        /// Path relative to that directory.
        src: String,
    },
    /// A symbolic link.
    Symlink {
        /// Link target.
        target: String,
    },
}

/// Where COPY reads from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `ADD https://…`: one file downloaded before the build, pinned by its sha256 (the
    /// `--checksum`, or the digest `Dockerfile.lock` recorded). Never extracted, as in
    /// BuildKit; the copy's one source is [`CopyFrom::Url::file_name`].
    Url {
        /// The URL as written (after expansion).
        url: String,
        /// sha256 of the content.
        digest: Digest,
        /// The file's name: the last component of the URL's path (`__unnamed__` if none).
        file_name: String,
        /// The file's mtime: the server's `Last-Modified`, when it sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtime: Option<i64>,
    },
    /// `ADD <git repository>`: a checkout of one commit, made with the `git` CLI. Files get
    /// SOURCE_DATE_EPOCH as mtime; `.git` is dropped unless `keep_git_dir`.
    Git {
        /// The repository (`https://…/repo.git`, `git@host:repo`, `file:///…`), without `#ref`.
        url: String,
        /// The ref as written after `#` (branch, tag or commit; empty: the default branch).
        reference: String,
        /// The commit it resolved to (or the lock pinned).
        commit: String,
        /// `--keep-git-dir`.
        keep_git_dir: bool,
    },
}

/// A file written from a heredoc.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InlineFile {
    /// File name (the heredoc delimiter).
    pub name: String,
    /// Content after expansion.
    pub content: String,
}

/// `COPY`/`ADD`, fully expanded.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

impl CopyOp {
    /// A copy of `sources` from `from` to `dest` with no flags: what a `RUN --mount` bind's
    /// source is hashed as, and the simplest copy a test needs.
    pub fn plain(from: CopyFrom, sources: Vec<String>, dest: &str) -> CopyOp {
        CopyOp {
            from,
            sources,
            inline: vec![],
            dest: dest.into(),
            chown: None,
            chmod: None,
            extract_archives: false,
            parents: false,
            excludes: vec![],
            link: false,
        }
    }
}

/// `WORKDIR` directory creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MkdirOp {
    /// Absolute path.
    pub path: String,
    /// The USER at that point, who owns the created directories.
    pub user: Option<String>,
}

/// `RUN`, fully resolved: argv, environment, identity, mounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub mounts: Vec<crate::mounts::RunMount>,
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

    /// The builder stages (needed, not the target), each as a plan targeting it, with only
    /// the stages it needs marked needed: what `--sbom-stages` catalogues.
    pub fn builder_stages(&self) -> Vec<Plan> {
        let mut out = vec![];
        for st in self.needed_stages() {
            if st.index == self.target {
                continue;
            }
            let mut p = self.clone();
            p.target = st.index;
            let mut keep = vec![false; p.stages.len()];
            let mut todo = vec![st.index];
            while let Some(i) = todo.pop() {
                if !keep[i] {
                    keep[i] = true;
                    todo.extend(self.stages[i].depends_on.iter().copied());
                }
            }
            for (s, k) in p.stages.iter_mut().zip(keep) {
                s.needed = k;
            }
            out.push(p);
        }
        out
    }
}
