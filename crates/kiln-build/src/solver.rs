//! The solver: executes a [`Plan`] against the store.
//!
//! Stages run in waves: every stage whose dependencies are done runs in parallel with the
//! others of its wave. Each step is looked up in the cache by a key derived from its
//! parent's key, its definition and the content of its inputs (never mtimes or paths
//! outside the build), so a rebuild with nothing changed does no layer work.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use kiln_oci::image::{History, ImageConfig, read_image, rfc3339, write_image};
use kiln_oci::layer::{Compression, LayerEntry, LayerWriter};
use kiln_oci::store::Descriptor;
use kiln_oci::{Digest, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::cache::RemoteCache;
use crate::cache::config::StepRecord;
use crate::cache::explain::{self, Inputs};
use crate::copy::{self, Materialize, Ownership};
use crate::error::{BuildError, StepError};
use crate::snapshot::Snapshotter;
use crate::statcache::StatCache;
use crate::tree::{self, ContextTree, LayeredTree, Tree};
use kiln_plan::plan::{Base, CopyFrom, Op, Plan, StagePlan, Step};

pub(crate) mod inflight;

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
pub(crate) struct CacheRecord {
    pub(crate) layer: Option<LayerRef>,
}

/// Receives progress events; the CLI renders them as bars or plain lines.
pub trait Progress: Sync {
    /// A step began (before its cache lookup), so a display can show it while it runs;
    /// `step_done` for the same stage follows. Steps of one stage never overlap.
    fn step_started(&self, _stage: &str, _index: usize, _total: usize, _created_by: &str) {}
    /// The running step of `stage` wrote `bytes` more file content into its layer (COPY,
    /// ADD, a RUN's changes), so a long layer write shows its bytes and rate.
    fn step_bytes(&self, _stage: &str, _bytes: u64) {}
    /// A step finished (or was found in the cache).
    fn step_done(&self, stage: &str, index: usize, total: usize, created_by: &str, cached: bool, seconds: f64);
    /// Something worth a warning.
    fn warn(&self, message: &str);
    /// One line of a RUN step's output (never secret values: kiln prints none, and a step
    /// that echoes a secret is the step's doing).
    fn output(&self, _stage: &str, _line: &str) {}
    /// A line about the build's inputs (a lock written, a .deb fetched).
    fn note(&self, _message: &str) {}
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
    /// Records from `--cache-from`, consulted after the local cache.
    pub remote: Option<&'a dyn RemoteCache>,
    /// `--explain-cache`: say why each step that ran missed the cache.
    pub explain: bool,
    /// `--cache-to type=inline`: the image's config carries the final stage's records.
    pub inline_cache: bool,
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
    /// `--allow network.host`: the host's network namespace may be used (BuildKit's
    /// entitlement); without it `--network=host` and `RUN --network=host` are refused.
    pub allow_network_host: bool,
    /// `--keep-volatile`.
    pub keep_volatile: bool,
    /// `--hermetic`: no step has network (not even `RUN --network=default`).
    pub hermetic: bool,
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
    /// Every step's key and result, in the order the steps ran (for `--cache-to`).
    pub records: Vec<StepRecord>,
}

/// Where a step runs: the step, the key and layers below it, and names for messages.
struct StepAt<'b> {
    step: &'b Step,
    parent_key: [u8; 32],
    /// The layers below the step (a copy: the producer may run after the stage moved on).
    layers: Vec<LayerRef>,
    outs: &'b [Option<StageOut>],
    origin: &'b str,
    label: &'b str,
    /// The stage's architecture: a foreign one runs RUN under QEMU ([`crate::run::qemu`]).
    arch: &'b str,
    /// The stage's key settings ([`Solver::settings`]).
    settings: &'b str,
}

/// A step's cache keys: `record` finds its layer in the cache, `chain` is what the next
/// step's key builds on. They differ only for steps whose layer does not depend on what
/// lies below them.
struct StepKeys {
    record: [u8; 32],
    chain: [u8; 32],
    /// The named hashes the key was made from, for `--explain-cache`.
    inputs: Inputs,
}

impl StepKeys {
    fn chained(key: [u8; 32], inputs: Inputs) -> StepKeys {
        StepKeys {
            record: key,
            chain: key,
            inputs,
        }
    }
}

/// Named key inputs: what lies below and the instruction, then `more`.
fn inputs(below: &[u8; 32], op_json: &[u8], more: impl IntoIterator<Item = (String, [u8; 32])>) -> Inputs {
    let mut m = vec![
        (explain::BELOW.to_string(), *below),
        (explain::INSTRUCTION.to_string(), hash(&[op_json])),
    ];
    m.extend(more);
    Inputs::new(m)
}

#[derive(Clone)]
struct StageOut {
    layers: Vec<LayerRef>,
    history: Vec<History>,
    key: [u8; 32],
}

/// Work that makes a step's layer, run only on a cache miss.
type Producer<'s, 'a> = Box<dyn FnOnce(&Solver<'s>) -> Result<Option<LayerRef>, BuildError> + 'a>;

/// Refuses, before anything runs, a build that would use the host's network without
/// `--allow network.host`: the `--network=host` flag, or a `RUN --network=host` in a stage
/// the build needs (as BuildKit checks entitlements when it solves).
fn check_entitlements(plan: &Plan, opts: &SolveOptions<'_>) -> Result<(), BuildError> {
    let run = &opts.run;
    if run.hermetic {
        let host = plan
            .needed_stages()
            .flat_map(|s| s.steps.iter())
            .find(|step| matches!(&step.op, Op::Run(r) if r.network.as_deref().is_some_and(|n| n != "none")));
        if let Some(step) = host {
            return Err(BuildError::Step {
                file: opts.file_name.clone(),
                line: step.line,
                error: StepError::new(
                    "--hermetic: this RUN asks for a network",
                    "drop its --network, or build without --hermetic",
                ),
            });
        }
        return Ok(());
    }
    if run.allow_network_host {
        return Ok(());
    }
    let host_step = plan
        .needed_stages()
        .flat_map(|s| s.steps.iter())
        .find(|step| matches!(&step.op, Op::Run(r) if r.network.as_deref() == Some("host")));
    let (line, what) = match host_step {
        Some(step) => (step.line, "RUN --network=host"),
        None if run.network.as_deref() == Some("host") => (0, "--network=host"),
        None => return Ok(()),
    };
    Err(BuildError::Step {
        file: opts.file_name.clone(),
        line,
        error: crate::run::network::host_not_allowed(what),
    })
}

struct Solver<'a> {
    store: &'a Store,
    plan: &'a Plan,
    opts: &'a SolveOptions<'a>,
    stat_cache: StatCache,
    counts: Mutex<(usize, usize)>,
    records: Mutex<Vec<StepRecord>>,
    /// `--cache-from` hits whose layer is not fetched (and checked) yet: recorded in the
    /// local cache only once it is.
    unverified: Mutex<Vec<([u8; 32], LayerRef)>>,
    snapshots: Snapshotter<'a>,
    user_network: crate::run::network::UserNetwork,
    /// A cache record was written whose name is not fsynced yet (its content is): the
    /// cache directory is synced once at the end of the build instead of once per step.
    records_unsynced: std::sync::atomic::AtomicBool,
}

/// Executes the plan and writes the target image to the store (untagged; the caller tags).
pub fn solve(store: &Store, plan: &Plan, opts: &SolveOptions<'_>) -> Result<Solved, BuildError> {
    check_entitlements(plan, opts)?;
    // Leftovers of killed builds go first, if no other kiln is running.
    crate::snapshot::clean_if_idle(store)?;
    let _lease = store.lease()?;
    let solver = Solver {
        store,
        plan,
        opts,
        stat_cache: StatCache::load(StatCache::path_for(&store.meta_dir(), opts.context.root())),
        counts: Mutex::new((0, 0)),
        records: Mutex::new(vec![]),
        unverified: Mutex::new(vec![]),
        snapshots: Snapshotter::new(store),
        user_network: crate::run::network::UserNetwork::new(),
        records_unsynced: std::sync::atomic::AtomicBool::new(false),
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
    solver.sync_records()?;
    solver.stat_cache.save(&store.tmp_dir());
    let target = &plan.stages[plan.target];
    let out = outs[plan.target].take().expect("target stage solved");
    let mut config: ImageConfig = target.config.clone();
    config.rootfs.diff_ids = out.layers.iter().map(|l| l.diff_id.clone()).collect();
    config.history = out.history;
    solver.ensure_blobs(&out.layers)?;
    let layers: Vec<Descriptor> = out.layers.iter().map(|l| l.descriptor.clone()).collect();
    let mut records = solver.records.into_inner().unwrap();
    // Stages of one wave ran side by side: stage order (steps stay in order) keeps an
    // exported cache the same bytes for the same build.
    records.sort_by_key(|r| r.stage);
    let manifest = if opts.inline_cache {
        let target_records: Vec<StepRecord> = records.iter().filter(|r| r.stage == plan.target).cloned().collect();
        crate::cache::export::write_inline_image(store, &config, &layers, &target_records)?
    } else {
        write_image(store, &config, &layers, BTreeMap::new())?
    };
    let m: kiln_oci::Manifest = store.read_json(&manifest.digest)?;
    let (hits, misses) = *solver.counts.lock().unwrap();
    Ok(Solved {
        manifest,
        config_digest: m.config.digest,
        layers: out.layers,
        cache_hits: hits,
        cache_misses: misses,
        records,
    })
}

/// Writes an image index over per-platform manifests (a kiln.toml build's result), in the
/// order given; nothing is tagged.
pub fn write_index(store: &Store, manifests: &[(kiln_oci::Platform, Descriptor)]) -> Result<Descriptor, BuildError> {
    let index = kiln_oci::Index {
        schema_version: 2,
        media_type: Some(kiln_oci::media::OCI_INDEX.into()),
        manifests: manifests
            .iter()
            .map(|(p, d)| {
                let mut d = d.clone();
                d.platform = Some(p.clone());
                d
            })
            .collect(),
        annotations: BTreeMap::new(),
    };
    let bytes = kiln_oci::canonical_json(&index);
    let digest = store.put_blob(&bytes)?;
    Ok(Descriptor::new(kiln_oci::media::OCI_INDEX, digest, bytes.len() as u64))
}

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

impl<'a> Solver<'a> {
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

    /// The cache-key settings every step of a stage shares: its platform, compression and
    /// SOURCE_DATE_EPOCH all change layer bytes. The platform is the stage's own, not the
    /// target's: a `FROM --platform=$BUILDPLATFORM` stage has the same keys for every
    /// target platform, so the platforms of one build share its steps (as in BuildKit). A
    /// step that reads the target still differs per target: a RUN carries the build args
    /// it sees (`TARGETARCH`, ...) in its environment, hence in its op and key, and
    /// image sources are pinned by digest per platform.
    fn settings(&self, st: &StagePlan) -> String {
        let platform = kiln_plan::platform::format(&st.config.platform());
        format!("{platform}|{:?}|{}", self.opts.compression, self.plan.source_date_epoch)
    }

    /// What a stage starts from: its base's layers, history and cache key.
    fn stage_base(&self, st: &StagePlan, outs: &[Option<StageOut>]) -> Result<StageOut, BuildError> {
        let settings = self.settings(st);
        Ok(match &st.base {
            Base::Scratch => StageOut {
                layers: vec![],
                history: vec![],
                key: hash(&[b"kiln-cache-v1", b"scratch", settings.as_bytes()]),
            },
            Base::Stage { index } => {
                let o = outs[*index].as_ref().expect("dependency solved");
                StageOut {
                    layers: o.layers.clone(),
                    history: o.history.clone(),
                    key: hash(&[b"kiln-cache-v1", &o.key, settings.as_bytes()]),
                }
            }
            Base::Image { digest, reference } => {
                let (layers, history) = self.image_layers(digest, reference)?;
                StageOut {
                    layers,
                    history,
                    key: hash(&[b"kiln-cache-v1", digest.to_string().as_bytes(), settings.as_bytes()]),
                }
            }
        })
    }

    fn run_stage(&self, st: &StagePlan, outs: &[Option<StageOut>]) -> Result<StageOut, BuildError> {
        let StageOut {
            mut layers,
            mut history,
            mut key,
        } = self.stage_base(st, outs)?;
        let label = self.stage_label(st);
        // Names the image whose layers a failure came from (base images dominate the count).
        let origin = match &st.base {
            Base::Image { reference, .. } => format!("{reference} (stage {label})"),
            _ => format!("stage {label}"),
        };
        let total = st.steps.len();
        let settings = self.settings(st);
        for (n, step) in st.steps.iter().enumerate() {
            let started = Instant::now();
            self.opts.progress.step_started(&label, n + 1, total, &step.created_by);
            let at = StepAt {
                step,
                parent_key: key,
                layers: layers.clone(),
                outs,
                origin: &origin,
                label: &label,
                arch: &st.config.architecture,
                settings: &settings,
            };
            let (keys, produce) = self.prepare_step(&at)?;
            key = keys.chain;
            let (layer, cached) = match produce {
                None => (None, false),
                Some(f) => self.produce(&keys.record, f)?,
            };
            if !matches!(step.op, Op::Metadata) {
                {
                    let mut c = self.counts.lock().unwrap();
                    if cached { c.0 += 1 } else { c.1 += 1 }
                }
                self.records.lock().unwrap().push(StepRecord {
                    stage: st.index,
                    key: keys.record,
                    layer: layer.clone(),
                });
                self.keep_inputs(&label, n, &step.created_by, &keys.inputs, cached);
            }
            history.push(History {
                created: Some(rfc3339(self.plan.source_date_epoch)),
                created_by: Some(step.created_by.clone()),
                author: None,
                comment: self.plan.history_comment.clone(),
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

    /// A step's layer: from the cache record under `key` (local, then `--cache-from`), or
    /// made by `f` and recorded. A layer from `--cache-from` is fetched only when something
    /// needs its content ([`Solver::ensure_blobs`]).
    fn produce(&self, key: &[u8; 32], f: Producer<'a, '_>) -> Result<(Option<LayerRef>, bool), BuildError> {
        if !self.opts.no_cache {
            if let Some(rec) = self.cache_get(key) {
                return Ok((rec.layer, true));
            }
            if let Some(layer) = self.opts.remote.and_then(|r| r.lookup(key)) {
                // Kept locally only once its layer is fetched and checked (ensure_blobs).
                match &layer {
                    None => self.cache_put(key, &CacheRecord { layer: None })?,
                    Some(l) => self.unverified.lock().unwrap().push((*key, l.clone())),
                }
                return Ok((layer, true));
            }
        }
        // Another solve of this process (a multi-platform build's other platform) may be
        // making the same step now: wait for it, and take its record if it made one.
        let claim = (!self.opts.no_cache).then(|| {
            inflight::claim(&self.store.meta_dir(), key, || {
                self.opts
                    .progress
                    .note("another kiln process is making the same step; waiting to take its result")
            })
        });
        if claim.is_some()
            && let Some(rec) = self.cache_get(key)
        {
            return Ok((rec.layer, true));
        }
        let layer = f(self)?;
        self.cache_put(key, &CacheRecord { layer: layer.clone() })?;
        Ok((layer, false))
    }

    /// Fetches, from `--cache-from`, the blobs of `layers` the store lacks, and checks each
    /// layer a remote record named against its digest and diff_id. Without a remote cache
    /// a missing blob is left for the caller to report.
    /// The layers are fetched and checked side by side (up to 4 at a time): each is a
    /// download, then a decompression to its diff_id.
    fn ensure_blobs(&self, layers: &[LayerRef]) -> Result<(), BuildError> {
        let Some(remote) = self.opts.remote else { return Ok(()) };
        let mut todo: Vec<&LayerRef> = Vec::new();
        for l in layers {
            // A layer named by a remote record is checked even when its blob is here
            // already: the record's diff_id is only a claim.
            let claimed = self.unverified.lock().unwrap().iter().any(|(_, p)| p == l);
            if (claimed || !self.store.has_blob(&l.descriptor.digest)) && !todo.contains(&l) {
                todo.push(l);
            }
        }
        kiln_oci::parallel::try_map_ordered(&todo, 4, |_, l| remote.fetch(self.store, l))
            .map_err(|message| BuildError::CacheImport { message })?;
        for l in todo {
            let verified: Vec<[u8; 32]> = {
                let mut u = self.unverified.lock().unwrap();
                let (done, rest) = u.drain(..).partition(|(_, p)| p == l);
                *u = rest;
                done.into_iter().map(|(k, _)| k).collect::<Vec<_>>()
            };
            for k in verified {
                self.cache_put(&k, &CacheRecord { layer: Some(l.clone()) })?;
            }
        }
        Ok(())
    }

    /// Keeps a step's key inputs for the next `--explain-cache`, and explains a miss now.
    fn keep_inputs(&self, label: &str, n: usize, created_by: &str, now: &Inputs, cached: bool) {
        let platform = kiln_plan::platform::format(&self.plan.platform);
        let id = format!("{}\0{platform}\0{label}\0{n}", self.opts.file_name);
        let wanted = self.opts.explain && !cached;
        if let Some(why) = explain::keep(self.store, &id, now, wanted.then_some(n == 0)) {
            self.opts
                .progress
                .note(&format!("explain-cache: [{label} {}] {created_by}: {why}", n + 1));
        }
    }

    /// A step's cache keys, and the work that makes its layer on a miss (none for metadata).
    fn prepare_step<'b>(&self, at: &StepAt<'b>) -> Result<(StepKeys, Option<Producer<'a, 'b>>), BuildError>
    where
        'a: 'b,
    {
        let step = at.step;
        let key = at.parent_key;
        let op_json = serde_json::to_vec(&step.op).expect("plans serialise");
        let (origin, label, arch) = (at.origin.to_string(), at.label.to_string(), at.arch.to_string());
        let layers_now = at.layers.clone();
        let outs = at.outs;
        Ok(match &step.op {
            Op::Metadata => (StepKeys::chained(hash(&[&key, &op_json]), Inputs::default()), None),
            Op::Run(r) => {
                let mut more = vec![];
                let mut parts: Vec<Vec<u8>> = vec![key.to_vec(), op_json.clone()];
                for (i, m) in r.mounts.iter().enumerate() {
                    let mk = self.mount_key(step, m, outs)?;
                    parts.push(mk.to_vec());
                    more.push((format!("mount {}", i + 1), mk));
                }
                // --keep-volatile changes the layer, so it is part of the key (only
                // when set, so the usual keys stay as they are).
                if self.opts.run.keep_volatile {
                    parts.push(b"keep-volatile".to_vec());
                    more.push(("--keep-volatile".into(), [1; 32]));
                }
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                (
                    StepKeys::chained(hash(&refs), inputs(&key, &op_json, more)),
                    Some(Box::new(move |s: &Solver<'a>| {
                        crate::run::qemu::ensure(&arch).map_err(|error| BuildError::Environment {
                            file: s.opts.file_name.clone(),
                            line: step.line,
                            error,
                        })?;
                        s.run(step, r, &layers_now, outs, &origin, &label)
                    })),
                )
            }
            Op::Mkdir(m) => (
                StepKeys::chained(hash(&[&key, &op_json]), inputs(&key, &op_json, [])),
                Some(Box::new(move |s: &Solver<'a>| s.mkdir(step, m, &layers_now, &origin))),
            ),
            Op::Copy(c) => {
                let (k, collected, more) = match &c.from {
                    CopyFrom::Context => {
                        let col = copy::collect(c, self.opts.context, Some(&self.stat_cache), &step.created_by)
                            .map_err(|e| self.step_err(step, e))?;
                        let files: Vec<(String, [u8; 32])> = col
                            .item_hashes
                            .iter()
                            .map(|(p, h)| (format!("{}{p}", explain::FILE), *h))
                            .collect();
                        (hash(&[&key, &op_json, &col.content_key]), Some(col), files)
                    }
                    CopyFrom::Stage { index } => {
                        let o = outs[*index].as_ref().expect("dependency solved");
                        let more = vec![(format!("stage {index}"), o.key)];
                        (hash(&[&key, &op_json, &o.key]), None, more)
                    }
                    CopyFrom::Image { digest, .. } => {
                        let d = digest.to_string();
                        let more = vec![("source image".to_string(), hash(&[d.as_bytes()]))];
                        (hash(&[&key, &op_json, d.as_bytes()]), None, more)
                    }
                    // The digest or commit is in the op; --explain-cache names it.
                    CopyFrom::Url { url, digest, .. } => {
                        let more = vec![(url.clone(), hash(&[digest.to_string().as_bytes()]))];
                        (hash(&[&key, &op_json]), None, more)
                    }
                    CopyFrom::Git { url, commit, .. } => {
                        let more = vec![(url.clone(), hash(&[commit.as_bytes()]))];
                        (hash(&[&key, &op_json]), None, more)
                    }
                };
                (
                    StepKeys::chained(k, inputs(&key, &op_json, more)),
                    Some(Box::new(move |s: &Solver<'a>| {
                        s.copy(step, c, collected, &layers_now, outs, (&origin, &label))
                    })),
                )
            }
            Op::Debian(d) => {
                // The layer depends on the packages alone (as COPY --link), so its record
                // is shared by every image that installs them, whatever lies below.
                let record = hash(&[b"kiln-deb-layer-v1", at.settings.as_bytes(), &op_json]);
                (
                    StepKeys {
                        record,
                        chain: hash(&[&key, &record]),
                        inputs: inputs(&[0; 32], &op_json, []),
                    },
                    Some(Box::new(move |s: &Solver<'a>| {
                        let sde = s.plan.source_date_epoch;
                        s.write_layer(Some(&label), crate::files::debian_entries(s.store, d, sde)?)
                    })),
                )
            }
            Op::Files(f) => {
                let root = self.opts.context.root();
                let content = crate::files::content_key(f, root)?;
                (
                    StepKeys::chained(
                        hash(&[&key, &op_json, &content]),
                        inputs(&key, &op_json, [("files".into(), content)]),
                    ),
                    Some(Box::new(move |s: &Solver<'a>| {
                        let sde = s.plan.source_date_epoch;
                        s.write_layer(Some(&label), crate::files::file_entries(f, s.opts.context.root(), sde)?)
                    })),
                )
            }
        })
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
        // The record's bytes are fsynced before it is named, so a record that exists after a
        // crash is whole (and its layer, written and fsynced before it, too). Its name is
        // made durable with the others' at the end of the build (one directory fsync, not
        // one per step): a crash before that may only lose records, so steps run again.
        kiln_oci::store::write_then_rename(
            &self.store.tmp_dir(),
            &path,
            &serde_json::to_vec(rec).expect("records serialise"),
        )?;
        self.records_unsynced.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Makes the names of this build's cache records durable (one fsync of the directory).
    fn sync_records(&self) -> Result<(), BuildError> {
        if !self.records_unsynced.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let dir = self.store.meta_dir().join("cache");
        kiln_oci::fsutil::sync_dir(&dir).map_err(|source| BuildError::Io {
            path: dir.display().to_string(),
            source,
        })
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
        Ok((layer_refs(&img), img.config.history))
    }

    fn view(&self, layers: &[LayerRef], image: &str) -> Result<LayeredTree, BuildError> {
        self.ensure_blobs(layers)?;
        Ok(LayeredTree::new(self.snapshots.stack(layers, image)?))
    }

    /// Writes a step's layer; the file bytes written are reported as the step of `label`
    /// (in batches, so a 10k-file COPY costs the display a few hundred calls, not 10k).
    fn write_layer(
        &self,
        label: Option<&str>,
        entries: impl IntoIterator<Item = LayerEntry>,
    ) -> Result<Option<LayerRef>, BuildError> {
        const BATCH: u64 = 1 << 20;
        let mut w = LayerWriter::new(self.store, self.opts.compression, Some(self.plan.source_date_epoch))?;
        let mut any = false;
        let (mut pending, mut entries_pending) = (0u64, 0u32);
        let progress = self.opts.progress;
        for e in entries {
            // Bytes are reported while a file is read, so one large file grows on screen.
            w.append_reporting(&e, &mut |n| {
                pending += n;
                if let Some(l) = label
                    && pending >= BATCH
                {
                    progress.step_bytes(l, pending);
                    pending = 0;
                }
            })?;
            any = true;
            entries_pending += 1;
            if entries_pending >= 256 {
                if let Some(l) = label
                    && pending > 0
                {
                    progress.step_bytes(l, pending);
                    pending = 0;
                }
                entries_pending = 0;
            }
        }
        if let Some(l) = label
            && pending > 0
        {
            self.opts.progress.step_bytes(l, pending);
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
        m: &kiln_plan::mounts::RunMount,
        outs: &[Option<StageOut>],
    ) -> Result<[u8; 32], BuildError> {
        use kiln_plan::mounts::{MountFrom, RunMount};
        let RunMount::Bind { from, source, .. } = m else {
            return Ok([0; 32]);
        };
        Ok(match from {
            MountFrom::Context => {
                let op = kiln_plan::plan::CopyOp::plain(CopyFrom::Context, vec![source.clone()], "/");
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
        op: &kiln_plan::plan::RunOp,
        layers: &[LayerRef],
        outs: &[Option<StageOut>],
        origin: &str,
        label: &str,
    ) -> Result<Option<LayerRef>, BuildError> {
        use crate::run::exec::{Network, RunError, RunInputs, Runtime, run_step};
        use kiln_plan::mounts::MountFrom;
        let settings = &self.opts.run;
        let runtime = Runtime::for_steps(settings.runtime.as_deref()).map_err(|e| self.step_err(step, e))?;
        let view = self.view(layers, origin)?;
        let network = match settings.network.as_deref() {
            _ if settings.hermetic => Network::None,
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
            allow_network_host: settings.allow_network_host,
            user_network: &self.user_network,
            keep_volatile: settings.keep_volatile,
            context_dir: self.opts.context.root(),
            source_layers: &source_layers,
            output: &output,
        };
        match run_step(&inputs) {
            Ok(result) => self.write_layer(Some(label), result.entries.iter().cloned()),
            Err(RunError::Setup(e)) => Err(self.step_err(step, e)),
            Err(RunError::DiskFull { path, free }) => Err(BuildError::DiskFull {
                at: format!("{}:{}", self.opts.file_name, step.line),
                path: path.display().to_string(),
                free,
            }),
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
        m: &kiln_plan::plan::MkdirOp,
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
        self.write_layer(None, entries)
    }

    fn copy(
        &self,
        step: &Step,
        op: &kiln_plan::plan::CopyOp,
        collected: Option<copy::Collected>,
        layers: &[LayerRef],
        outs: &[Option<StageOut>],
        (origin, label): (&str, &str),
    ) -> Result<Option<LayerRef>, BuildError> {
        let source_view;
        let remote;
        let (source, from_context): (&dyn Tree, bool) = match &op.from {
            CopyFrom::Context => (self.opts.context, true),
            CopyFrom::Url { .. } | CopyFrom::Git { .. } => {
                let (dir, root) =
                    crate::remote::source_tree(self.store, &op.from).map_err(|e| self.step_err(step, e))?;
                remote = (dir, ContextTree::new(root, None));
                (&remote.1, true)
            }
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
            file_mtime: match &op.from {
                CopyFrom::Url { mtime, .. } => *mtime,
                _ => None,
            },
        };
        let entries = copy::materialize(op, &collected, &m).map_err(|e| self.step_err(step, e))?;
        self.write_layer(Some(label), entries.into_values())
    }
}

/// An image's layers paired with their diff_ids (the caller checks the counts match).
pub fn layer_refs(img: &kiln_oci::image::Image) -> Vec<LayerRef> {
    img.manifest
        .layers
        .iter()
        .zip(&img.config.rootfs.diff_ids)
        .map(|(d, id)| LayerRef {
            diff_id: id.clone(),
            descriptor: d.clone(),
        })
        .collect()
}
