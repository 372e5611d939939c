//! `kiln policy check|input|test`: one policy file decides whether images may ship. The
//! engine is kiln-policy; this module parses flags, keeps the decision cache under
//! `$KILN_HOME/kiln/policy` and renders decisions (human, JSON, SARIF).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use kiln_oci::Store;
use kiln_policy::cache::DecisionCache;
use kiln_policy::{Decision, Gather, Input, Mode, Policy, PolicyError, Violation, gather_input};

use crate::cli::RegistryFlags;
use crate::error::CliError;

impl From<PolicyError> for CliError {
    fn from(e: PolicyError) -> Self {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::env(e)
        }
    }
}

/// `kiln policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// `kiln policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide whether images may ship: exit 0 when every image is allowed, 1 when any is denied.
    Check(CheckArgs),
    /// Print the input document rules and Rego see for an image.
    Input(InputArgs),
    /// Run fixtures (an input document and the expected decision each) against a policy.
    Test(TestArgs),
}

/// Output formats of `kiln policy check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyFormat {
    /// One line per image and per violation.
    Human,
    /// The decisions as JSON.
    Json,
    /// SARIF 2.1.0, one result per violation.
    Sarif,
}

/// `kiln policy check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file (kiln-policy.yaml).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Images: store names, HOST/REPO:TAG (read from the registry), @sha256 digests, oci:DIR.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "human")]
    pub format: PolicyFormat,
    /// Decide again even when a cached decision exists.
    #[arg(long)]
    pub no_cache: bool,
    /// Read registry images' copies in the store instead of the registry.
    #[arg(long)]
    pub local: bool,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln policy input`.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// The image.
    pub image: String,
    /// A policy whose authorities' keys verify signatures, and whose rules say what to scan.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Read a registry image's copy in the store instead of the registry.
    #[arg(long)]
    pub local: bool,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln policy test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// A directory of fixtures: NAME.json files holding {"input": {…}, "allowed": bool, "violations": [rule names]}.
    pub dir: PathBuf,
}

/// Shared state of one command.
pub struct Engine<'a> {
    /// The store.
    pub store: &'a Store,
    /// The store's kiln directory (`$KILN_HOME/kiln`): vulnerability database, cache.
    pub meta: PathBuf,
    /// Registry access (`None`: the store only).
    pub registries: Option<kiln_registry::RegistryAccess>,
}

impl Engine<'_> {
    /// Gathers and decides for one image, with the cache unless `no_cache`; see
    /// [`kiln_policy::check`].
    pub fn decide(&self, policy: &Policy, image: &str, no_cache: bool) -> Result<Decision, CliError> {
        let cache = (!no_cache).then(|| DecisionCache::on_disk(&self.meta.join("policy")));
        let src = kiln_policy::Sources {
            store: self.store,
            registries: self.registries.as_ref(),
            meta: &self.meta,
        };
        Ok(kiln_policy::check(
            policy,
            &src,
            image,
            cache.as_ref(),
            kiln_policy::time::now(),
        )?)
    }
}

fn engine<'a>(store: &'a Store, meta: &Path, flags: &RegistryFlags, local: bool) -> Result<Engine<'a>, CliError> {
    Ok(Engine {
        store,
        meta: meta.to_path_buf(),
        registries: if local {
            None
        } else {
            Some(super::registry_access(flags)?)
        },
    })
}

/// `kiln policy …`.
pub fn policy(store: &Store, meta: &Path, args: &PolicyArgs) -> Result<(), CliError> {
    match &args.command {
        PolicyCommand::Check(a) => check(store, meta, a),
        PolicyCommand::Input(a) => input(store, meta, a),
        PolicyCommand::Test(a) => test(a),
    }
}

fn print(text: &str) {
    // A closed pipe is not an error of the check.
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn check(store: &Store, meta: &Path, args: &CheckArgs) -> Result<(), CliError> {
    let policy = Policy::load(&args.policy)?;
    let e = engine(store, meta, &args.registry, args.local)?;
    let mut decisions = vec![];
    for image in &args.images {
        decisions.push(e.decide(&policy, image, args.no_cache)?);
    }
    match args.format {
        PolicyFormat::Human => print(&human(&decisions)),
        PolicyFormat::Json => print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&decisions).expect("decisions serialise")
        )),
        PolicyFormat::Sarif => print(&sarif(&decisions, &args.policy)),
    }
    let denied = decisions.iter().filter(|d| !d.allowed).count();
    if denied > 0 {
        return Err(CliError {
            code: 1,
            message: format!(
                "{denied} of {} image(s) denied by {}",
                decisions.len(),
                args.policy.display()
            ),
        });
    }
    Ok(())
}

/// `ALLOWED`/`DENIED` per image, then its violations and warnings.
pub fn human(decisions: &[Decision]) -> String {
    let mut s = String::new();
    for d in decisions {
        let verdict = if d.allowed { "ALLOWED" } else { "DENIED" };
        let at = if d.digest.is_empty() {
            String::new()
        } else {
            format!("@{}", d.digest)
        };
        s.push_str(&format!("{verdict} {}{at}\n", d.reference));
        for v in &d.violations {
            s.push_str(&format!("  deny: {}\n", v.line()));
        }
        for v in &d.warnings {
            s.push_str(&format!("  warn: {}\n", v.line()));
        }
    }
    s
}

fn sarif(decisions: &[Decision], policy: &Path) -> String {
    use kiln_sarif as s;
    let mut rules: Vec<s::Rule> = vec![];
    let mut results = vec![];
    for d in decisions {
        for v in d.violations.iter().chain(&d.warnings) {
            let i = match rules.iter().position(|r| r.id == v.rule) {
                Some(i) => i,
                None => {
                    rules.push(s::Rule {
                        id: v.rule.clone(),
                        name: Some(v.rule.clone()),
                        short_description: s::Message::new(format!("policy rule {}", v.rule)),
                        full_description: None,
                        help: None,
                        help_uri: None,
                        default_configuration: s::Configuration { level: s::Level::Error },
                        properties: serde_json::Map::new(),
                    });
                    rules.len() - 1
                }
            };
            results.push(s::SarifResult {
                rule_id: v.rule.clone(),
                rule_index: i,
                level: if v.mode == Mode::Warn {
                    s::Level::Warning
                } else {
                    s::Level::Error
                },
                message: s::Message::new(format!("{}@{}: {} ({})", d.reference, d.digest, v.message, v.fix)),
                locations: vec![s::Location::file(&policy.display().to_string(), None)],
                partial_fingerprints: serde_json::Map::new(),
            });
        }
    }
    s::Log::new(s::Run::kiln("kiln-policy", None, rules, results)).to_json()
}

fn input(store: &Store, meta: &Path, args: &InputArgs) -> Result<(), CliError> {
    let policy = args.policy.as_deref().map(Policy::load).transpose()?;
    let e = engine(store, meta, &args.registry, args.local)?;
    let empty = Default::default();
    let db = kiln_scan::db::Db::at(&e.meta);
    let has_db = db.meta().ok().flatten().is_some();
    let g = Gather {
        store,
        registries: e.registries.as_ref(),
        keys: policy.as_ref().map_or(&empty, |p| p.keys()),
        db: Some(db),
        types: {
            let mut t: Vec<String> = kiln_policy::gather::USUAL_TYPES.iter().map(|s| s.to_string()).collect();
            for extra in policy.as_ref().map(|p| p.types()).unwrap_or_default() {
                if !t.contains(&extra) {
                    t.push(extra);
                }
            }
            t
        },
        needs: kiln_policy::Needs {
            vulns: has_db,
            secrets: true,
            sbom: true,
        },
    };
    let input = gather_input(&g, &args.image)?;
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&input).expect("input serialises")
    ));
    Ok(())
}

/// One fixture: an input and the expected decision.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    input: Input,
    allowed: bool,
    /// Rule names expected among the violations (enforce and warn), in any order.
    #[serde(default)]
    violations: Option<Vec<String>>,
    /// Evaluation time (RFC 3339), for fixtures with dates; now by default.
    #[serde(default)]
    now: Option<String>,
}

fn test(args: &TestArgs) -> Result<(), CliError> {
    let policy = Policy::load(&args.policy)?;
    let entries = std::fs::read_dir(&args.dir).map_err(|e| {
        CliError::input(format!(
            "{}: {e} (hint: a directory of NAME.json fixtures)",
            args.dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CliError::input(format!(
            "{}: no fixtures (hint: NAME.json files with {{\"input\": …, \"allowed\": true|false}})",
            args.dir.display()
        )));
    }
    let mut failed = 0;
    for f in &files {
        let name = f.file_name().unwrap_or_default().to_string_lossy().to_string();
        match run_fixture(&policy, f) {
            Ok(()) => println!("PASS {name}"),
            Err(why) => {
                failed += 1;
                println!("FAIL {name}: {why}");
            }
        }
    }
    println!("{} passed, {failed} failed", files.len() - failed);
    if failed > 0 {
        return Err(CliError {
            code: 1,
            message: format!("{failed} of {} fixture(s) failed", files.len()),
        });
    }
    Ok(())
}

fn run_fixture(policy: &Policy, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let fx: Fixture = serde_json::from_slice(&bytes).map_err(|e| format!("not a fixture: {e}"))?;
    let now = match &fx.now {
        Some(t) => kiln_policy::time::parse_rfc3339(t).ok_or(format!("now {t:?} is not an RFC 3339 time"))?,
        None => kiln_policy::time::now(),
    };
    let d = policy.evaluate_at(&fx.input, now);
    if d.allowed != fx.allowed {
        let lines: Vec<String> = d.violations.iter().map(Violation::line).collect();
        return Err(format!(
            "expected {}, got {} [{}]",
            if fx.allowed { "allowed" } else { "denied" },
            if d.allowed { "allowed" } else { "denied" },
            lines.join("; ")
        ));
    }
    if let Some(want) = &fx.violations {
        let mut got: Vec<String> = d.violations.iter().chain(&d.warnings).map(|v| v.rule.clone()).collect();
        got.sort();
        got.dedup();
        let mut want = want.clone();
        want.sort();
        want.dedup();
        if got != want {
            return Err(format!("expected violations of {want:?}, got {got:?}"));
        }
    }
    Ok(())
}

/// `kiln build --policy`: the policy applied to the signed build before it is exported or
/// pushed, to the store's copy under the first -t name.
struct PolicyGate {
    policy: Policy,
}

/// Loads the policy for `kiln build --policy` (errors now, before anything is built).
pub fn gate(path: &Path) -> Result<Box<dyn kiln_build::pipeline::Gate>, CliError> {
    Ok(Box::new(PolicyGate {
        policy: Policy::load(path)?,
    }))
}

impl kiln_build::pipeline::Gate for PolicyGate {
    fn check(
        &self,
        store: &Store,
        _image: &kiln_oci::Descriptor,
        tags: &[String],
    ) -> Result<(), kiln_build::pipeline::PipelineError> {
        use kiln_build::pipeline::PipelineError;
        let name = tags.first().map(String::as_str).unwrap_or_default();
        let e = Engine {
            store,
            meta: store.root().join("kiln"),
            registries: None,
        };
        let d = e.decide(&self.policy, name, true).map_err(|e| PipelineError::Input {
            message: e.message,
            hint: "check the policy and the image name".into(),
        })?;
        eprint!("{}", human(std::slice::from_ref(&d)));
        if d.allowed {
            return Ok(());
        }
        Err(PipelineError::Denied {
            message: format!(
                "{name}: denied by {} ({} violation(s) above); nothing was tagged, exported or pushed",
                self.policy.path.display(),
                d.violations.len()
            ),
        })
    }
}
