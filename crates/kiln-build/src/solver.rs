//! The solver: executes a [`Plan`] against the store.
//!
//! Stages run in waves: every stage whose dependencies are done runs in parallel with the
//! others of its wave. Each step is looked up in the cache by a key derived from its
//! parent's key, its definition and the content of its inputs (never mtimes or paths
//! outside the build), so a rebuild with nothing changed does no layer work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use kiln_oci::image::{History, ImageConfig, read_image, rfc3339, write_image};
use kiln_oci::layer::{Compression, LayerEntry, LayerWriter};
use kiln_oci::store::Descriptor;
use kiln_oci::{Digest, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::copy::{self, Materialize, Ownership};
use crate::error::{BuildError, StepError};
use crate::plan::{Base, CopyFrom, Op, Plan, StagePlan, Step};
use crate::statcache::StatCache;
use crate::tree::{self, ContextTree, LayeredTree, Tree};

/// A layer of an image being built: its diff_id and blob descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Uncompressed digest.
    pub diff_id: Digest,
    /// Blob descriptor.
    pub descriptor: Descriptor,
}

/// A cache record: what a step produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheRecord {
    layer: Option<LayerRef>,
}

/// Receives progress events; the CLI renders them as bars or plain lines.
pub trait Progress: Sync {
    /// A step finished (or was found in the cache).
    fn step_done(&self, stage: &str, index: usize, total: usize, created_by: &str, cached: bool, seconds: f64);
    /// Something worth a warning.
    fn warn(&self, message: &str);
    /// One line of a RUN step's output (never secret values: kiln prints none, and a step
    /// that echoes a secret is the step's doing).
    fn output(&self, _stage: &str, _line: &str) {}
}

/// A progress sink that prints nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn step_done(&self, _: &str, _: usize, _: usize, _: &str, _: bool, _: f64) {}
    fn warn(&self, _: &str) {}
}

/// What the solver needs besides the plan.
pub struct SolveOptions<'a> {
    /// Dockerfile name for messages.
    pub file_name: String,
    /// The build context (already configured with .dockerignore).
    pub context: &'a ContextTree,
    /// Layer compression.
    pub compression: Compression,
    /// Ignore cache hits (records are still written).
    pub no_cache: bool,
    /// Progress sink.
    pub progress: &'a dyn Progress,
    /// How RUN steps execute.
    pub run: RunSettings,
}

/// Settings for RUN steps from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    /// `--runtime`: runc, crun or a path; `None` picks one.
    pub runtime: Option<String>,
    /// `--secret`s.
    pub secrets: BTreeMap<String, crate::run::exec::SecretSource>,
    /// `--ssh` sockets.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--network` for steps that do not say.
    pub network: Option<String>,
    /// `--keep-volatile`.
    pub keep_volatile: bool,
}

/// The result of a solve.
#[derive(Debug, Clone)]
pub struct Solved {
    /// The target image's manifest.
    pub manifest: Descriptor,
    /// Its config digest.
    pub config_digest: Digest,
    /// Its layers.
    pub layers: Vec<LayerRef>,
    /// Steps answered from the cache.
    pub cache_hits: usize,
    /// Steps executed.
    pub cache_misses: usize,
}

#[derive(Clone)]
struct StageOut {
    layers: Vec<LayerRef>,
    history: Vec<History>,
    key: [u8; 32],
}

/// Work that makes a step's layer, run only on a cache miss.
type Producer<'s, 'a> = Box<dyn FnOnce(&Solver<'s>) -> Result<Option<LayerRef>, BuildError> + 'a>;

struct Solver<'a> {
    store: &'a Store,
    plan: &'a Plan,
    opts: &'a SolveOptions<'a>,
    stat_cache: StatCache,
    counts: Mutex<(usize, usize)>,
    unpack_lock: Mutex<()>,
}

/// Executes the plan and writes the target image to the store (untagged; the caller tags).
pub fn solve(store: &Store, plan: &Plan, opts: &SolveOptions<'_>) -> Result<Solved, BuildError> {
    let _lease = store.lease()?;
    let solver = Solver {
        store,
        plan,
        opts,
        stat_cache: StatCache::load(store.meta_dir().join("statcache")),
        counts: Mutex::new((0, 0)),
        unpack_lock: Mutex::new(()),
    };
    let mut outs: Vec<Option<StageOut>> = vec![None; plan.stages.len()];
    let mut pending: Vec<usize> = plan.needed_stages().map(|s| s.index).collect();
    while !pending.is_empty() {
        let (ready, rest): (Vec<usize>, Vec<usize>) = pending
            .iter()
            .partition(|&&i| plan.stages[i].depends_on.iter().all(|d| outs[*d].is_some()));
        pending = rest;
        let results: Vec<(usize, Result<StageOut, BuildError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = ready
                .iter()
                .map(|&i| {
                    let solver = &solver;
                    let outs = &outs;
                    s.spawn(move || (i, solver.run_stage(&plan.stages[i], outs)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("stage thread panicked"))
                .collect()
        });
        for (i, r) in results {
            outs[i] = Some(r?);
        }
    }
    solver.stat_cache.save(&store.tmp_dir());
    let target = &plan.stages[plan.target];
    let out = outs[plan.target].take().expect("target stage solved");
    let mut config: ImageConfig = target.config.clone();
    config.rootfs.diff_ids = out.layers.iter().map(|l| l.diff_id.clone()).collect();
    config.history = out.history;
    let layers: Vec<Descriptor> = out.layers.iter().map(|l| l.descriptor.clone()).collect();
    let manifest = write_image(store, &config, &layers, BTreeMap::new())?;
    let m: kiln_oci::Manifest = store.read_json(&manifest.digest)?;
    let (hits, misses) = *solver.counts.lock().unwrap();
    Ok(Solved {
        manifest,
        config_digest: m.config.digest,
        layers: out.layers,
        cache_hits: hits,
        cache_misses: misses,
    })
}

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

impl Solver<'_> {
    fn stage_label(&self, st: &StagePlan) -> String {
        st.name.clone().unwrap_or_else(|| format!("stage-{}", st.index))
    }

    fn step_err(&self, step: &Step, error: StepError) -> BuildError {
        BuildError::Step {
            file: self.opts.file_name.clone(),
            line: step.line,
            error,
        }
    }

    fn run_stage(&self, st: &StagePlan, outs: &[Option<StageOut>]) -> Result<StageOut, BuildError> {
        let platform = crate::platform::format(&self.plan.platform);
        let settings = format!("{platform}|{:?}|{}", self.opts.compression, self.plan.source_date_epoch);
        let (mut layers, mut history, mut key) = match &st.base {
            Base::Scratch => (
                vec![],
                vec![],
                hash(&[b"kiln-cache-v1", b"scratch", settings.as_bytes()]),
            ),
            Base::Stage { index } => {
                let o = outs[*index].as_ref().expect("dependency solved");
                (
                    o.layers.clone(),
                    o.history.clone(),
                    hash(&[b"kiln-cache-v1", &o.key, settings.as_bytes()]),
                )
            }
            Base::Image { digest, reference } => {
                let (layers, history) = self.image_layers(digest, reference)?;
                (
                    layers,
                    history,
                    hash(&[b"kiln-cache-v1", digest.to_string().as_bytes(), settings.as_bytes()]),
                )
            }
        };
        let label = self.stage_label(st);
        // Names the image whose layers a failure came from (base images dominate the count).
        let origin = match &st.base {
            Base::Image { reference, .. } => format!("{reference} (stage {label})"),
            _ => format!("stage {label}"),
        };
        let total = st.steps.len();
        for (n, step) in st.steps.iter().enumerate() {
            let started = Instant::now();
            let op_json = serde_json::to_vec(&step.op).expect("plans serialise");
            let created = Some(rfc3339(self.plan.source_date_epoch));
            let (step_key, produce): (_, Option<Producer<'_, '_>>) = match &step.op {
                Op::Metadata => (hash(&[&key, &op_json]), None),
                Op::Run(r) => {
                    let mut parts: Vec<Vec<u8>> = vec![key.to_vec(), op_json.clone()];
                    for m in &r.mounts {
                        parts.push(self.mount_key(step, m, outs)?.to_vec());
                    }
                    // --keep-volatile changes the layer, so it is part of the key (only
                    // when set, so the usual keys stay as they are).
                    if self.opts.run.keep_volatile {
                        parts.push(b"keep-volatile".to_vec());
                    }
                    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                    let k = hash(&refs);
                    let layers_now = layers.clone();
                    let origin = origin.clone();
                    let label = label.clone();
                    (
                        k,
                        Some(Box::new(move |s: &Self| {
                            s.run(step, r, &layers_now, outs, &origin, &label)
                        })),
                    )
                }
                Op::Mkdir(m) => {
                    let k = hash(&[&key, &op_json]);
                    let layers_now = layers.clone();
                    let origin = origin.clone();
                    (
                        k,
                        Some(Box::new(move |s: &Self| s.mkdir(step, m, &layers_now, &origin))),
                    )
                }
                Op::Copy(c) => {
                    let (k, collected) = match &c.from {
                        CopyFrom::Context => {
                            let col = copy::collect(c, self.opts.context, Some(&self.stat_cache), &step.created_by)
                                .map_err(|e| self.step_err(step, e))?;
                            (hash(&[&key, &op_json, &col.content_key]), Some(col))
                        }
                        CopyFrom::Stage { index } => {
                            let o = outs[*index].as_ref().expect("dependency solved");
                            (hash(&[&key, &op_json, &o.key]), None)
                        }
                        CopyFrom::Image { digest, .. } => {
                            (hash(&[&key, &op_json, digest.to_string().as_bytes()]), None)
                        }
                    };
                    let layers_now = layers.clone();
                    let origin = origin.clone();
                    (
                        k,
                        Some(Box::new(move |s: &Self| {
                            s.copy(step, c, collected, &layers_now, outs, &origin)
                        })),
                    )
                }
            };
            key = step_key;
            let (layer, cached) = match produce {
                None => (None, false),
                Some(f) => match self.cache_get(&key) {
                    Some(rec) if !self.opts.no_cache => (rec.layer, true),
                    _ => {
                        let layer = f(self)?;
                        self.cache_put(&key, &CacheRecord { layer: layer.clone() })?;
                        (layer, false)
                    }
                },
            };
            if !matches!(step.op, Op::Metadata) {
                let mut c = self.counts.lock().unwrap();
                if cached { c.0 += 1 } else { c.1 += 1 }
            }
            history.push(History {
                created,
                created_by: Some(step.created_by.clone()),
                author: None,
                comment: Some("kiln".into()),
                empty_layer: layer.is_none(),
            });
            if let Some(l) = layer {
                layers.push(l);
            }
            self.opts.progress.step_done(
                &label,
                n + 1,
                total,
                &step.created_by,
                cached,
                started.elapsed().as_secs_f64(),
            );
        }
        Ok(StageOut { layers, history, key })
    }

    fn cache_path(&self, key: &[u8; 32]) -> PathBuf {
        self.store.meta_dir().join("cache").join(hex::encode(key))
    }

    fn cache_get(&self, key: &[u8; 32]) -> Option<CacheRecord> {
        let data = std::fs::read(self.cache_path(key)).ok()?;
        let rec: CacheRecord = serde_json::from_slice(&data).ok()?;
        match &rec.layer {
            Some(l) if !self.store.has_blob(&l.descriptor.digest) => None,
            _ => Some(rec),
        }
    }

    fn cache_put(&self, key: &[u8; 32], rec: &CacheRecord) -> Result<(), BuildError> {
        let path = self.cache_path(key);
        let dir = path.parent().expect("cache path has a parent");
        std::fs::create_dir_all(dir).map_err(|source| BuildError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        kiln_oci::store::atomic_write(
            &self.store.tmp_dir(),
            &path,
            &serde_json::to_vec(rec).expect("records serialise"),
        )?;
        Ok(())
    }

    fn image_layers(&self, digest: &Digest, reference: &str) -> Result<(Vec<LayerRef>, Vec<History>), BuildError> {
        let desc = Descriptor::new(kiln_oci::media::OCI_MANIFEST, digest.clone(), 0);
        let img = read_image(self.store, &desc, None)?;
        if img.manifest.layers.len() != img.config.rootfs.diff_ids.len() {
            return Err(BuildError::Step {
                file: reference.to_string(),
                line: 0,
                error: StepError::new(
                    format!(
                        "image {reference} ({digest}) has {} layers but {} diff_ids",
                        img.manifest.layers.len(),
                        img.config.rootfs.diff_ids.len()
                    ),
                    "the image is malformed; rebuild or re-pull it",
                ),
            });
        }
        let layers = img
            .manifest
            .layers
            .iter()
            .zip(&img.config.rootfs.diff_ids)
            .map(|(d, id)| LayerRef {
                diff_id: id.clone(),
                descriptor: d.clone(),
            })
            .collect();
        Ok((layers, img.config.history))
    }

    /// The snapshot of the rootfs after `layers` (the last one applied on top of the
    /// others): `kiln/snapshots/<chain id>` holds what that layer changed, in overlayfs's
    /// upper-dir form, so a stack of snapshots is what overlay mounts as lower dirs. Made
    /// once and reused by every later build.
    ///
    /// The layer is applied through an overlay of the snapshots below it, as containerd's
    /// snapshotter does: a parent directory the layer's tar does not list is copied up with
    /// its real owner and mode, rather than invented as root's 0755, which would hide them.
    fn unpacked(&self, layers: &[LayerRef], image: &str) -> Result<PathBuf, BuildError> {
        let layer = layers.last().expect("at least one layer");
        let chain = chain_id(layers);
        let root = snapshots_dir(self.store);
        let dir = root.join(chain.hex());
        if dir.is_dir() {
            return Ok(dir);
        }
        let lowers = (1..layers.len())
            .map(|n| self.unpacked(&layers[..n], image))
            .collect::<Result<Vec<_>, _>>()?;
        let _g = self.unpack_lock.lock().unwrap();
        if dir.is_dir() {
            return Ok(dir);
        }
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| BuildError::Io { path, source }
        };
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&root)
            .map_err(io(&root))?;
        let (upper, work, merged) = (
            tmp.path().join("upper"),
            tmp.path().join("work"),
            tmp.path().join("merged"),
        );
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let blob = self.store.open_blob(&layer.descriptor.digest)?;
        let hashing = kiln_oci::digest::VerifyingReader::unchecked(blob);
        let stream = kiln_oci::decompress::open_layer_stream_for_media_type(hashing, &layer.descriptor.media_type)
            .map_err(|source| BuildError::Io {
                path: layer.descriptor.digest.to_string(),
                source,
            })?;
        // Through an overlay when there is something below and we may mount (root, or the
        // user namespace of a rootless build); otherwise straight into the snapshot, with
        // whiteouts recorded the way overlay would.
        let mount = if lowers.is_empty() {
            None
        } else {
            crate::run::overlay::OverlayMount::mount(&lowers, &upper, &work, &merged, &tmp.path().join("empty")).ok()
        };
        let (target, whiteouts) = match &mount {
            Some(_) => (&merged, kiln_oci::unpack::WhiteoutMode::Apply),
            None => (&upper, kiln_oci::unpack::WhiteoutMode::Keep),
        };
        let opts = kiln_oci::unpack::UnpackOptions {
            whiteouts,
            ..Default::default()
        };
        kiln_oci::unpack::unpack_layer(stream, target, &opts).map_err(|source| BuildError::Unpack {
            image: image.to_string(),
            layer: layer.descriptor.digest.to_string(),
            source,
        })?;
        drop(mount);
        if let Err(e) = std::fs::rename(&upper, &dir)
            && !dir.is_dir()
        {
            return Err(BuildError::Io {
                path: dir.display().to_string(),
                source: e,
            });
        }
        Ok(dir)
    }

    fn view(&self, layers: &[LayerRef], image: &str) -> Result<LayeredTree, BuildError> {
        let dirs = (1..=layers.len())
            .map(|n| self.unpacked(&layers[..n], image))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LayeredTree::new(dirs))
    }

    fn write_layer(&self, entries: impl IntoIterator<Item = LayerEntry>) -> Result<Option<LayerRef>, BuildError> {
        let mut w = LayerWriter::new(self.store, self.opts.compression, Some(self.plan.source_date_epoch))?;
        let mut any = false;
        for e in entries {
            w.append(&e)?;
            any = true;
        }
        if !any {
            return Ok(None);
        }
        let info = w.finish()?;
        Ok(Some(LayerRef {
            diff_id: info.diff_id,
            descriptor: info.descriptor,
        }))
    }

    /// The part of a RUN's cache key that its mounts contribute: bind sources are content.
    fn mount_key(
        &self,
        step: &Step,
        m: &crate::run::mounts::RunMount,
        outs: &[Option<StageOut>],
    ) -> Result<[u8; 32], BuildError> {
        use crate::run::mounts::{MountFrom, RunMount};
        let RunMount::Bind { from, source, .. } = m else {
            return Ok([0; 32]);
        };
        Ok(match from {
            MountFrom::Context => {
                let op = crate::plan::CopyOp {
                    from: CopyFrom::Context,
                    sources: vec![source.clone()],
                    inline: vec![],
                    dest: "/".into(),
                    chown: None,
                    chmod: None,
                    extract_archives: false,
                    parents: false,
                    excludes: vec![],
                    link: false,
                };
                copy::collect(&op, self.opts.context, Some(&self.stat_cache), &step.created_by)
                    .map_err(|e| self.step_err(step, e))?
                    .content_key
            }
            MountFrom::Stage { index } => outs[*index].as_ref().expect("dependency solved").key,
            MountFrom::Image { digest, .. } => hash(&[digest.to_string().as_bytes()]),
            MountFrom::Named { name } => hash(&[name.as_bytes()]),
        })
    }

    fn run(
        &self,
        step: &Step,
        op: &crate::plan::RunOp,
        layers: &[LayerRef],
        outs: &[Option<StageOut>],
        origin: &str,
        label: &str,
    ) -> Result<Option<LayerRef>, BuildError> {
        use crate::run::exec::{Network, RunError, RunInputs, Runtime, run_step};
        use crate::run::mounts::MountFrom;
        let settings = &self.opts.run;
        let runtime = Runtime::find(settings.runtime.as_deref()).map_err(|e| self.step_err(step, e))?;
        let view = self.view(layers, origin)?;
        let network = match settings.network.as_deref() {
            None => Network::Default,
            Some(n) => Network::parse(n).ok_or_else(|| {
                self.step_err(
                    step,
                    StepError::new(format!("invalid --network {n:?}"), "use default, none or host"),
                )
            })?,
        };
        let source_layers = |from: &MountFrom| -> Result<Vec<PathBuf>, StepError> {
            let to_step = |e: BuildError| StepError::new(e.to_string(), "check the mount's from=");
            let layers = match from {
                MountFrom::Stage { index } => outs[*index].as_ref().expect("dependency solved").layers.clone(),
                MountFrom::Image { digest, reference } => self.image_layers(digest, reference).map_err(to_step)?.0,
                MountFrom::Context | MountFrom::Named { .. } => vec![],
            };
            Ok(self.view(&layers, "mount source").map_err(to_step)?.layers().to_vec())
        };
        let progress = self.opts.progress;
        let output = |line: &str| progress.output(label, line);
        let inputs = RunInputs {
            meta_dir: &self.store.meta_dir(),
            op,
            lowers: view.layers().to_vec(),
            view: &view,
            source_date_epoch: self.plan.source_date_epoch,
            runtime: &runtime,
            secrets: &settings.secrets,
            ssh: &settings.ssh,
            network,
            keep_volatile: settings.keep_volatile,
            context_dir: self.opts.context.root(),
            source_layers: &source_layers,
            output: &output,
        };
        match run_step(&inputs) {
            Ok(result) => self.write_layer(result.entries.iter().cloned()),
            Err(RunError::Setup(e)) => Err(self.step_err(step, e)),
            Err(RunError::Failed { code, tail }) => Err(BuildError::RunFailed {
                file: self.opts.file_name.clone(),
                line: step.line,
                instruction: step.created_by.clone(),
                code,
                tail,
            }),
        }
    }

    fn mkdir(
        &self,
        step: &Step,
        m: &crate::plan::MkdirOp,
        layers: &[LayerRef],
        origin: &str,
    ) -> Result<Option<LayerRef>, BuildError> {
        let target = self.view(layers, origin)?;
        let io = |e: std::io::Error| {
            self.step_err(
                step,
                StepError::new(format!("WORKDIR {}: {e}", m.path), "check the path"),
            )
        };
        let real = tree::resolve(&target, &m.path, true).map_err(io)?;
        let (uid, gid) = match &m.user {
            Some(u) if !u.is_empty() => copy::resolve_owner(u, &target).map_err(|e| self.step_err(step, e))?,
            _ => (0, 0),
        };
        let mut entries = Vec::new();
        let mut prefix = String::new();
        for comp in real.split('/').filter(|c| !c.is_empty()) {
            prefix = tree::join(&prefix, comp);
            match target.lstat(&prefix).map_err(io)? {
                Some(n) if n.is_dir() => continue,
                Some(_) => {
                    return Err(self.step_err(
                        step,
                        StepError::new(
                            format!("WORKDIR {}: /{prefix} exists and is not a directory", m.path),
                            "choose another directory",
                        ),
                    ));
                }
                None => {
                    let mut e = LayerEntry::dir(prefix.clone(), 0o755);
                    (e.uid, e.gid, e.mtime) = (uid as u64, gid as u64, self.plan.source_date_epoch);
                    entries.push(e);
                }
            }
        }
        self.write_layer(entries)
    }

    fn copy(
        &self,
        step: &Step,
        op: &crate::plan::CopyOp,
        collected: Option<copy::Collected>,
        layers: &[LayerRef],
        outs: &[Option<StageOut>],
        origin: &str,
    ) -> Result<Option<LayerRef>, BuildError> {
        let source_view;
        let (source, from_context): (&dyn Tree, bool) = match &op.from {
            CopyFrom::Context => (self.opts.context, true),
            CopyFrom::Stage { index } => {
                let o = outs[*index].as_ref().expect("dependency solved");
                source_view = self.view(&o.layers, &format!("stage {index}"))?;
                (&source_view, false)
            }
            CopyFrom::Image { digest, reference } => {
                let (l, _) = self.image_layers(digest, reference)?;
                source_view = self.view(&l, reference)?;
                (&source_view, false)
            }
        };
        let collected = match collected {
            Some(c) => c,
            None => copy::collect(op, source, None, &step.created_by).map_err(|e| self.step_err(step, e))?,
        };
        let target = self.view(layers, origin)?;
        let chown = match &op.chown {
            Some(spec) => Some(copy::resolve_owner(spec, &target).map_err(|e| self.step_err(step, e))?),
            None => None,
        };
        let scratch = tempfile::Builder::new()
            .prefix("copy-")
            .tempdir_in(self.store.tmp_dir())
            .map_err(|source| BuildError::Io {
                path: self.store.tmp_dir().display().to_string(),
                source,
            })?;
        let m = Materialize {
            target: &target,
            owner: Ownership {
                chown,
                preserve: !from_context,
            },
            source_date_epoch: self.plan.source_date_epoch,
            from_context,
            scratch_dir: scratch.path(),
        };
        let entries = copy::materialize(op, &collected, &m).map_err(|e| self.step_err(step, e))?;
        self.write_layer(entries.into_values())
    }
}

/// The directory of rootfs snapshots (one per chain of layers), which `kiln prune --cache` clears.
pub fn snapshots_dir(store: &Store) -> PathBuf {
    store.meta_dir().join("snapshots")
}

/// The OCI chain ID of a stack of layers: a snapshot's identity depends on everything below
/// it, since applying a layer reads what is already there.
pub fn chain_id(layers: &[LayerRef]) -> Digest {
    let mut chain = layers[0].diff_id.clone();
    for l in &layers[1..] {
        chain = Digest::sha256_of(format!("{chain} {}", l.diff_id).as_bytes());
    }
    chain
}

/// Every blob a cache record references, so `prune` can keep them (unless asked to drop the
/// build cache too).
pub fn cache_roots(store: &Store) -> std::collections::BTreeSet<Digest> {
    let mut out = std::collections::BTreeSet::new();
    let dir = store.meta_dir().join("cache");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if let Ok(data) = std::fs::read(e.path())
                && let Ok(rec) = serde_json::from_slice::<CacheRecord>(&data)
                && let Some(l) = rec.layer
            {
                out.insert(l.descriptor.digest);
            }
        }
    }
    out
}

/// Removes the build cache records and unpacked layers.
pub fn clear_cache(store: &Store) -> std::io::Result<()> {
    for d in [
        store.meta_dir().join("cache"),
        snapshots_dir(store),
        store.meta_dir().join("layers"),
        store.meta_dir().join("statcache"),
    ] {
        match std::fs::metadata(&d) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&d)?,
            Ok(_) => std::fs::remove_file(&d)?,
            Err(_) => {}
        }
    }
    Ok(())
}
