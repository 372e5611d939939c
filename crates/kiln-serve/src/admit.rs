//! One admission: the pod found in the object, every image decided by the policy engine
//! (at once, under a deadline), the pod checked against the matching rules' `pod:`
//! sections, and the answer: a denial listing each violation by container, warn-mode
//! violations as warnings, and for `/mutate` a JSONPatch pinning every tag to the digest
//! that was decided on. Anything that goes wrong denies (fail closed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use kiln_policy::Mode;

use crate::audit::{AuditRow, ImageRow};
use crate::engine::{Engine, ImageVerdict};
use crate::pods::{Container, Pod};
use crate::review::{Request, Response, Status};

/// Server-wide admission settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The longest a decision may take; past it the request is denied (kube-apiserver
    /// gives up after its own timeout, 10 s at most).
    pub deadline: Duration,
    /// Namespaces never checked (also excluded by the webhook's namespaceSelector).
    pub exempt: Vec<String>,
    /// How long a tag's resolution to a digest is kept (zero: resolved on every request).
    pub tag_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            deadline: Duration::from_secs(8),
            exempt: vec!["kube-system".into()],
            tag_ttl: Duration::from_secs(10),
        }
    }
}

/// Which webhook asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /validate`.
    Validate,
    /// `POST /mutate`: the same decision, and a patch pinning tags to digests.
    Mutate,
}

impl Endpoint {
    /// Its name in the audit table and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// The answer to one request and what the audit table keeps of it.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The response sent back.
    pub response: Response,
    /// The audit row (not written for dry runs).
    pub row: AuditRow,
    /// Image decisions answered from the cache.
    pub cache_hits: usize,
}

fn row(req: &Request, endpoint: Endpoint, now: i64, policy: &str) -> AuditRow {
    let object = req.object.as_ref().cloned().unwrap_or_default();
    AuditRow {
        uid: req.uid.clone(),
        endpoint: endpoint.name().into(),
        at: now,
        namespace: req.namespace.clone().unwrap_or_default(),
        kind: req.kind.kind.clone(),
        name: crate::pods::object_name(&object, req.name.as_deref()),
        operation: req.operation.clone(),
        user: req.user_info.username.clone(),
        allowed: true,
        result: "allowed".into(),
        message: String::new(),
        policy: policy.to_string(),
        images: vec![],
    }
}

fn finish(req: &Request, mut row: AuditRow, allowed: bool, result: &str, message: String, code: u16) -> Admission {
    row.allowed = allowed;
    row.result = result.into();
    row.message = message.clone();
    Admission {
        response: Response {
            uid: req.uid.clone(),
            allowed,
            status: (!allowed).then_some(Status { code, message }),
            ..Response::default()
        },
        row,
        cache_hits: 0,
    }
}

/// Decides `req` at `now` (seconds since the epoch).
pub async fn admit(engine: Arc<Engine>, settings: &Settings, req: &Request, endpoint: Endpoint, now: i64) -> Admission {
    let base = row(req, endpoint, now, &engine.policy.hash);
    if !matches!(req.operation.as_str(), "CREATE" | "UPDATE") {
        return finish(req, base, true, "skipped", String::new(), 200);
    }
    let ns = req.namespace.clone().unwrap_or_default();
    if settings.exempt.contains(&ns) {
        return finish(req, base, true, "exempt", format!("namespace {ns} is exempt"), 200);
    }
    let Some(object) = &req.object else {
        let why = "kiln: the request carries no object to check".to_string();
        return finish(req, base, false, "error", why, 400);
    };
    let pod = match crate::pods::pod(&req.kind.kind, object) {
        Ok(Some(p)) => p,
        Ok(None) => return finish(req, base, true, "skipped", String::new(), 200),
        Err(e) => return finish(req, base, false, "error", format!("kiln: {e}"), 400),
    };
    let images: BTreeSet<String> = pod
        .containers
        .iter()
        .map(|c| c.image.clone())
        .filter(|i| !i.is_empty())
        .collect();
    let verdicts = match decide_all(&engine, images, settings.deadline, now).await {
        Ok(v) => v,
        Err(why) => return finish(req, base, false, "error", why, 500),
    };
    let mut a = judge(&engine, req, base, &pod, &verdicts);
    if endpoint == Endpoint::Mutate && a.response.allowed {
        let ops = pin(&pod, &verdicts);
        if !ops.is_empty() {
            let patch = serde_json::to_vec(&ops).expect("a patch serialises");
            a.response.patch_type = Some("JSONPatch");
            a.response.patch = Some(base64::engine::general_purpose::STANDARD.encode(patch));
        }
    }
    a
}

/// Decides every image at once in blocking tasks; past the deadline the request fails.
async fn decide_all(
    engine: &Arc<Engine>,
    images: BTreeSet<String>,
    deadline: Duration,
    now: i64,
) -> Result<BTreeMap<String, ImageVerdict>, String> {
    let mut tasks = tokio::task::JoinSet::new();
    for image in &images {
        let (e, image) = (engine.clone(), image.clone());
        tasks.spawn_blocking(move || e.decide(&image, now));
    }
    let all = async {
        let mut out = BTreeMap::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(v) => {
                    out.insert(v.image.clone(), v);
                }
                Err(e) => return Err(format!("kiln: deciding an image failed: {e}")),
            }
        }
        Ok(out)
    };
    match tokio::time::timeout(deadline, all).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "kiln: no decision within {} s for {} (denied: the webhook fails closed)",
            deadline.as_secs_f64(),
            images.into_iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// How a message names a container.
fn who(c: &Container) -> String {
    format!("{} {:?} ({})", c.kind.noun(), c.name, c.image)
}

/// The verdict: image decisions and pod settings, by container.
fn judge(
    engine: &Engine,
    req: &Request,
    mut row: AuditRow,
    pod: &Pod,
    verdicts: &BTreeMap<String, ImageVerdict>,
) -> Admission {
    let mut denials: Vec<String> = vec![];
    let mut warnings: Vec<String> = vec![];
    let mut cache_hits = 0;
    let mut rules_of: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for c in &pod.containers {
        let Some(v) = verdicts.get(&c.image) else {
            denials.push(format!("{}: no image", who(c)));
            continue;
        };
        cache_hits += usize::from(v.cached);
        for x in &v.decision.violations {
            denials.push(format!("{}: {}", who(c), x.line()));
        }
        for x in &v.decision.warnings {
            warnings.push(format!("{}: {}", who(c), x.line()));
        }
        rules_of.insert(c.pointer.as_str(), engine.rules_for(&v.reference));
        row.images.push(ImageRow {
            container: c.name.clone(),
            image: c.image.clone(),
            digest: v.digest.clone(),
            allowed: v.decision.allowed,
        });
    }
    for (i, rule) in engine.policy.file.rules.iter().enumerate() {
        let Some(p) = &rule.pod else { continue };
        let applies = |c: &Container| rules_of.get(c.pointer.as_str()).is_some_and(|r| r.contains(&i));
        for f in crate::security::check(p, pod, &applies) {
            let at = match &f.container {
                Some(n) => pod
                    .containers
                    .iter()
                    .find(|c| &c.name == n)
                    .map(who)
                    .unwrap_or_else(|| format!("container {n:?}")),
                None => "pod".into(),
            };
            let line = format!("{at}: {}: {} (set {})", rule.name, f.message, f.fix);
            match rule.mode {
                Mode::Enforce => denials.push(line),
                Mode::Warn => warnings.push(line),
            }
        }
    }
    let allowed = denials.is_empty();
    let message = if allowed {
        String::new()
    } else {
        let ns = req.namespace.as_deref().unwrap_or_default();
        format!(
            "kiln denied {} {ns}/{}:\n{}",
            req.kind.kind,
            row.name,
            denials.iter().map(|d| format!("- {d}")).collect::<Vec<_>>().join("\n")
        )
    };
    let result = if allowed { "allowed" } else { "denied" };
    let mut a = finish(req, row, allowed, result, message, 403);
    a.response.warnings = warnings;
    a.cache_hits = cache_hits;
    a
}

/// JSONPatch operations replacing every image given by tag with `IMAGE@sha256:…`.
fn pin(pod: &Pod, verdicts: &BTreeMap<String, ImageVerdict>) -> Vec<serde_json::Value> {
    pod.containers
        .iter()
        .filter(|c| !c.image.contains('@'))
        .filter_map(|c| {
            let v = verdicts.get(&c.image).filter(|v| !v.digest.is_empty())?;
            Some(serde_json::json!({"op": "replace", "path": c.pointer, "value": format!("{}@{}", c.image, v.digest)}))
        })
        .collect()
}
