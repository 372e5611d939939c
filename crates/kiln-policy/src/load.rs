//! Loading a policy: the YAML (every error with `file:line:col`), then every file it
//! names (keys, Rego, VEX), each checked now, so a policy that loads can always be
//! evaluated. The policy's hash covers all of them: a changed key or Rego file is a new
//! policy for the decision cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_sign::PublicKey;
use sha2::{Digest as _, Sha256};

use crate::error::PolicyError;
use crate::model::{PolicyFile, Rule};
use crate::rego::RegoModule;
use crate::vex::VexStatement;

/// Largest policy, Rego or key file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A loaded policy: the file, its keys, Rego modules and VEX statements, and its hash.
/// Immutable once loaded and `Send + Sync`, so a server shares one behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy file as given.
    pub path: PathBuf,
    /// The parsed file.
    pub file: PolicyFile,
    /// sha256 of the policy file and every file it names, `sha256:<hex>`.
    pub hash: String,
    pub(crate) keys: BTreeMap<String, PublicKey>,
    /// Rego modules per rule (index into `file.rules`).
    pub(crate) rego: Vec<Vec<RegoModule>>,
    /// VEX statements from files, per rule.
    pub(crate) vex: Vec<Vec<VexStatement>>,
    /// The input fields each rule's Rego can read (`None`: all), see [`crate::rego::reach`].
    pub(crate) rego_reach: Vec<Option<std::collections::BTreeSet<String>>>,
}

/// Reads a file the policy needs, bounded.
pub(crate) fn read_bounded(path: &Path, what: &str) -> Result<Vec<u8>, PolicyError> {
    let err = |reason: String| PolicyError::File {
        path: path.to_path_buf(),
        reason,
        hint: format!("check the {what} path (relative paths are relative to the policy file)"),
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read the {what}: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(format!(
            "{} bytes, more than the {MAX_FILE_BYTES}-byte limit",
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|e| err(format!("cannot read the {what}: {e}")))
}

/// Line and column (1-based) of the first `needle` at or after line `from` (1-based) in
/// `text`, for errors about values serde cannot place; `(from, 1)` when absent.
fn place(text: &str, needle: &str, from: usize) -> (usize, usize) {
    for (i, line) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        if let Some(c) = line.find(needle) {
            return (i + 1, line[..c].chars().count() + 1);
        }
    }
    (from.max(1), 1)
}

/// The line where rule `name` starts.
fn rule_line(text: &str, name: &str) -> usize {
    let (l, _) = place(text, &format!("name: {name}"), 1);
    l
}

struct Ctx<'a> {
    file: String,
    text: &'a str,
    dir: PathBuf,
}

impl Ctx<'_> {
    fn err(&self, needle: &str, from: usize, reason: String, hint: &str) -> PolicyError {
        let (line, col) = place(self.text, needle, from);
        PolicyError::Parse {
            file: self.file.clone(),
            line,
            col,
            reason,
            hint: hint.to_string(),
        }
    }

    /// Files matching `pattern` (a glob in its last component), relative to the policy.
    fn expand(&self, pattern: &str, from: usize) -> Result<Vec<PathBuf>, PolicyError> {
        let p = self.dir.join(pattern);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            return Ok(vec![p]);
        }
        let parent = p.parent().unwrap_or(Path::new("."));
        let entries = std::fs::read_dir(parent).map_err(|e| {
            self.err(
                pattern,
                from,
                format!("{}: {e}", parent.display()),
                "check the directory exists",
            )
        })?;
        let mut out: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|f| crate::glob::value_matches(&name, &f.file_name().unwrap_or_default().to_string_lossy()))
            .collect();
        out.sort();
        if out.is_empty() {
            return Err(self.err(pattern, from, format!("{pattern:?} matches no file"), "check the glob"));
        }
        Ok(out)
    }
}

impl Policy {
    /// Loads and checks `path` and every file it names.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bytes = read_bounded(path, "policy file")?;
        let text = String::from_utf8(bytes).map_err(|_| PolicyError::File {
            path: path.to_path_buf(),
            reason: "not UTF-8 text".into(),
            hint: "a policy is a YAML file".into(),
        })?;
        let ctx = Ctx {
            file: path.display().to_string(),
            text: &text,
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let file = parse_yaml(&ctx)?;
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());
        let keys = load_keys(&ctx, &file, &mut hasher)?;
        let mut rego = vec![];
        let mut vex = vec![];
        for rule in &file.rules {
            check_rule(&ctx, &file, rule)?;
            rego.push(load_rego(&ctx, rule, &mut hasher)?);
            vex.push(load_vex(&ctx, rule, &mut hasher)?);
        }
        Ok(Policy {
            path: path.to_path_buf(),
            file,
            hash: format!("sha256:{}", hex::encode(hasher.finalize())),
            keys,
            rego_reach: rego.iter().map(|m| crate::rego::reach(m)).collect(),
            rego,
            vex,
        })
    }

    /// The public keys by authority name.
    pub fn keys(&self) -> &BTreeMap<String, PublicKey> {
        &self.keys
    }

    /// The rules that apply to `reference` (full reference, `HOST/REPO:TAG` or `@digest`).
    pub fn matching(&self, reference: &str) -> Vec<(usize, &Rule)> {
        self.file
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.images.iter().any(|g| crate::glob::image_matches(g, reference)))
            .collect()
    }
}

/// The YAML, typed; serde_yaml's errors carry the location.
fn parse_yaml(ctx: &Ctx) -> Result<PolicyFile, PolicyError> {
    let file: PolicyFile = serde_yaml::from_str(ctx.text).map_err(|e| {
        let (line, col) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        let msg = e.to_string();
        let reason = match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        PolicyError::Parse {
            file: ctx.file.clone(),
            line,
            col,
            reason,
            hint: "see docs/policy.md for the fields of kiln-policy.yaml".into(),
        }
    })?;
    if file.version != 1 {
        return Err(ctx.err(
            "version",
            1,
            format!("version {} is not supported", file.version),
            "write `version: 1`",
        ));
    }
    Ok(file)
}

fn load_keys(ctx: &Ctx, file: &PolicyFile, hasher: &mut Sha256) -> Result<BTreeMap<String, PublicKey>, PolicyError> {
    let mut keys = BTreeMap::new();
    for (name, a) in &file.authorities {
        let p = ctx.dir.join(&a.key);
        let from = place(ctx.text, &format!("{name}:"), 1).0;
        let bytes = std::fs::read(&p).map_err(|e| {
            ctx.err(
                &a.key,
                from,
                format!("authority {name:?}: cannot read key {}: {e}", p.display()),
                "generate one with kiln generate-key-pair (paths are relative to the policy file)",
            )
        })?;
        hasher.update(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let key = PublicKey::from_pem(&p, &text).map_err(|e| {
            ctx.err(
                &a.key,
                from,
                format!("authority {name:?}: {e}"),
                "a cosign.pub or PEM P-256 public key",
            )
        })?;
        keys.insert(name.clone(), key);
    }
    Ok(keys)
}

/// Checks what serde cannot: names of authorities, types, severities, dates, durations.
fn check_rule(ctx: &Ctx, file: &PolicyFile, rule: &Rule) -> Result<(), PolicyError> {
    let at = rule_line(ctx.text, &rule.name);
    let hint_auth = "name an authority defined under `authorities:`";
    let check_by = |by: &[String]| -> Result<(), PolicyError> {
        for b in by {
            if !file.authorities.contains_key(b) {
                return Err(ctx.err(
                    b,
                    at,
                    format!("rule {:?}: unknown authority {b:?}", rule.name),
                    hint_auth,
                ));
            }
        }
        Ok(())
    };
    if rule.images.is_empty() {
        return Err(ctx.err(
            "images",
            at,
            format!("rule {:?} matches no image", rule.name),
            "images: [\"HOST/REPO/**\"]",
        ));
    }
    if let Some(s) = &rule.signatures {
        check_by(&s.by)?;
        if s.threshold == 0 || s.threshold > s.by.len() {
            return Err(ctx.err(
                "threshold",
                at,
                format!(
                    "rule {:?}: threshold {} with {} authorities",
                    rule.name,
                    s.threshold,
                    s.by.len()
                ),
                "a threshold between 1 and the number of authorities in `by`",
            ));
        }
    }
    for a in &rule.attestations {
        check_by(&a.by)?;
        if crate::input::predicate_uri(&a.kind).is_none() {
            return Err(ctx.err(
                &a.kind,
                at,
                format!("rule {:?}: unknown attestation type {:?}", rule.name, a.kind),
                "slsaprovenance, spdxjson, cyclonedx, openvex, vuln, custom, or a predicate URI",
            ));
        }
    }
    if let Some(v) = &rule.vulnerabilities {
        crate::eval::severity_limit(&v.max_severity).ok_or_else(|| {
            ctx.err(
                "max_severity",
                at,
                format!("unknown severity {:?}", v.max_severity),
                "none, low, medium, high or critical",
            )
        })?;
        for i in &v.ignore {
            if let Some(u) = &i.until
                && crate::time::parse_date(u).is_none()
            {
                return Err(ctx.err(
                    u,
                    at,
                    format!("ignore {}: until {u:?} is not a date", i.id),
                    "until: YYYY-MM-DD",
                ));
            }
        }
    }
    if let Some(c) = &rule.config
        && let Some(m) = &c.max_age
        && crate::time::parse_duration(m).is_none()
    {
        return Err(ctx.err(
            "max_age",
            at,
            format!("max_age {m:?} is not a duration"),
            "90d, 12h, 30m or 2w",
        ));
    }
    if let Some(p) = &rule.pod
        && let Some(prof) = &p.profile
        && !matches!(prof.as_str(), "privileged" | "baseline" | "restricted")
    {
        return Err(ctx.err(
            prof,
            at,
            format!("unknown pod profile {prof:?}"),
            "privileged, baseline or restricted",
        ));
    }
    Ok(())
}

fn load_rego(ctx: &Ctx, rule: &Rule, hasher: &mut Sha256) -> Result<Vec<RegoModule>, PolicyError> {
    let at = rule_line(ctx.text, &rule.name);
    let mut modules = vec![];
    for pattern in &rule.rego {
        for p in ctx.expand(pattern, at)? {
            let bytes = read_bounded(&p, "Rego file")?;
            hasher.update(&bytes);
            modules.push(RegoModule {
                file: p.display().to_string(),
                text: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
    }
    crate::rego::check(&modules)?;
    Ok(modules)
}

fn load_vex(ctx: &Ctx, rule: &Rule, hasher: &mut Sha256) -> Result<Vec<VexStatement>, PolicyError> {
    let at = rule_line(ctx.text, &rule.name);
    let mut out = vec![];
    for pattern in rule.vulnerabilities.iter().flat_map(|v| &v.vex) {
        for p in ctx.expand(pattern, at)? {
            let bytes = read_bounded(&p, "VEX file")?;
            hasher.update(&bytes);
            let bad = |reason: String| PolicyError::File {
                path: p.clone(),
                reason,
                hint: "an OpenVEX JSON document (https://openvex.dev/ns/v0.2.0)".into(),
            };
            let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
            out.extend(crate::vex::parse(&doc, &p.display().to_string()).map_err(bad)?);
        }
    }
    Ok(out)
}
