//! SLSA provenance v1 for kiln builds, as the predicate of an in-toto Statement v1.
//!
//! The build types are kiln URIs documented in docs/sign.md:
//! - [`DOCKERFILE_BUILD_TYPE`]: externalParameters name the Dockerfile (path and sha256),
//!   target, platforms and build args (a value that looks like a credential is replaced by
//!   `<redacted>`); resolvedDependencies list the context's git commit and remote, the
//!   Dockerfile, and every base and `COPY --from` image by manifest digest.
//! - [`SPEC_BUILD_TYPE`]: the kiln.toml (path and sha256) and every .deb of kiln.lock
//!   (name, version, architecture, sha256, download URL).
//!
//! SOURCE_DATE_EPOCH is an internal parameter; `runDetails.metadata` holds the wall-clock
//! start and end of the build and an invocation id.

use std::path::Path;

use kiln_build::build::{BuildRequest, Prepared, git_info, looks_like_secret};
use kiln_build::plan::{Base, CopyFrom, Op};
use kiln_oci::Digest;
use serde_json::{Value, json};

use crate::error::{Result, SignError};

/// SLSA provenance v1's predicate type.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// buildType of a Dockerfile build.
pub const DOCKERFILE_BUILD_TYPE: &str = "https://kiln.dev/build-types/dockerfile/v1";
/// buildType of a kiln.toml build.
pub const SPEC_BUILD_TYPE: &str = "https://kiln.dev/build-types/kiln-toml/v1";
/// builder.id of kiln (the version is in builder.version).
pub const BUILDER_ID: &str = "https://kiln.dev/builder/kiln/v1";
/// Artifact type (and layer media type) of an unsigned in-toto statement kept beside an image.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// Annotation naming the predicate type of a stored statement.
pub const PREDICATE_ANNOTATION: &str = "in-toto.io/predicate-type";

fn sha256_file(path: &Path) -> Result<Digest> {
    let data = std::fs::read(path).map_err(|source| SignError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Digest::sha256_of(&data))
}

fn digest_map(d: &Digest) -> Value {
    json!({ d.algorithm().as_str(): d.hex() })
}

fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    kiln_oci::image::rfc3339(t)
}

/// Wall-clock bounds of a build, for `runDetails.metadata`.
#[derive(Debug, Clone)]
pub struct Timing {
    /// RFC 3339 start.
    pub started: String,
}

impl Timing {
    /// Starts the clock.
    pub fn start() -> Timing {
        Timing { started: now() }
    }
}

fn run_details(timing: &Timing) -> Value {
    let nonce: [u8; 8] = {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        b
    };
    json!({
        "builder": { "id": BUILDER_ID, "version": { "kiln": env!("CARGO_PKG_VERSION") } },
        "metadata": {
            "invocationId": format!("urn:kiln:build:{}", hex::encode(nonce)),
            "startedOn": timing.started,
            "finishedOn": now(),
        },
    })
}

fn git_dependency(dir: &Path) -> Option<Value> {
    let (_, commit, remote) = git_info(dir);
    git_value(dir, commit, remote)
}

fn git_value(dir: &Path, commit: Option<String>, remote: Option<String>) -> Option<Value> {
    let commit = commit?;
    let uri = match &remote {
        Some(r) => format!("git+{r}@{commit}"),
        None => format!("git+file:{}@{commit}", dir.display()),
    };
    let mut d = json!({ "name": "context", "uri": uri, "digest": { "gitCommit": commit } });
    if let Some(r) = remote {
        d["annotations"] = json!({ "remote": r });
    }
    Some(d)
}

/// The SLSA v1 predicate of a Dockerfile build.
pub fn dockerfile(prepared: &Prepared, req: &BuildRequest, timing: &Timing) -> Result<Value> {
    let dockerfile = req.dockerfile.clone().unwrap_or_else(|| req.context.join("Dockerfile"));
    let df_digest = sha256_file(&dockerfile)?;
    let plan = &prepared.plan;
    let mut build_args = serde_json::Map::new();
    for (k, v) in &req.build_args {
        let shown = if looks_like_secret(k, v) {
            "<redacted>".to_string()
        } else {
            v.clone()
        };
        build_args.insert(k.clone(), Value::String(shown));
    }
    let target = req
        .target
        .clone()
        .or_else(|| plan.stages.get(plan.target).and_then(|s| s.name.clone()));
    let mut external = json!({
        "source": { "path": prepared.file_name, "digest": digest_map(&df_digest) },
        "platforms": [kiln_build::platform::format(&plan.platform)],
        "buildArgs": build_args,
    });
    if let Some(t) = target {
        external["target"] = Value::String(t);
    }
    let mut deps = Vec::new();
    if let Some(g) = git_value(prepared.context.root(), prepared.git.0.clone(), prepared.git.1.clone()) {
        deps.push(g);
    }
    deps.push(json!({ "name": "dockerfile", "uri": format!("file:{}", prepared.file_name), "digest": digest_map(&df_digest) }));
    let mut seen = std::collections::BTreeSet::new();
    for st in plan.needed_stages() {
        let mut images: Vec<(&str, &Digest, &str)> = Vec::new();
        if let Base::Image { reference, digest } = &st.base {
            images.push((reference, digest, "base-image"));
        }
        for step in &st.steps {
            if let Op::Copy(c) = &step.op
                && let CopyFrom::Image { reference, digest } = &c.from
            {
                images.push((reference, digest, "copy-from-image"));
            }
        }
        for (reference, digest, role) in images {
            if seen.insert((reference.to_string(), digest.clone())) {
                deps.push(json!({
                    "name": reference,
                    "uri": format!("oci://{reference}@{digest}"),
                    "digest": digest_map(digest),
                    "annotations": { "role": role },
                }));
            }
        }
    }
    Ok(json!({
        "buildDefinition": {
            "buildType": DOCKERFILE_BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": {
                "SOURCE_DATE_EPOCH": plan.source_date_epoch,
                "buildPlatform": kiln_build::platform::format(&kiln_build::platform::host()),
            },
            "resolvedDependencies": deps,
        },
        "runDetails": run_details(timing),
    }))
}

/// The SLSA v1 predicate of a kiln.toml build, from the spec and its lock.
pub fn spec(spec_path: &Path, lock: &kiln_debian::Lock, source_date_epoch: i64, timing: &Timing) -> Result<Value> {
    let spec_digest = sha256_file(spec_path)?;
    let lock_path = kiln_build::spec::lock_path(spec_path);
    let mut deps = Vec::new();
    let dir = spec_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Some(g) = git_dependency(dir) {
        deps.push(g);
    }
    deps.push(json!({ "name": "kiln.toml", "uri": format!("file:{}", spec_path.display()), "digest": digest_map(&spec_digest) }));
    if let Ok(d) = sha256_file(&lock_path) {
        deps.push(
            json!({ "name": "kiln.lock", "uri": format!("file:{}", lock_path.display()), "digest": digest_map(&d) }),
        );
    }
    let mut arches: Vec<&str> = Vec::new();
    for p in &lock.package {
        if !arches.contains(&p.arch.as_str()) {
            arches.push(&p.arch);
        }
        deps.push(json!({
            "name": p.name,
            "uri": format!("pkg:deb/debian/{}@{}?arch={}", p.name, p.version, p.package_arch),
            "digest": { "sha256": p.sha256 },
            "downloadLocation": format!("{}/{}", p.url.trim_end_matches('/'), p.path),
            "annotations": { "version": p.version, "architecture": p.arch },
        }));
    }
    Ok(json!({
        "buildDefinition": {
            "buildType": SPEC_BUILD_TYPE,
            "externalParameters": {
                "source": { "path": spec_path.display().to_string(), "digest": digest_map(&spec_digest) },
                "architectures": arches,
                "lockSpecHash": lock.spec_hash,
            },
            "internalParameters": { "SOURCE_DATE_EPOCH": source_date_epoch },
            "resolvedDependencies": deps,
        },
        "runDetails": run_details(timing),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_provenance_lists_every_locked_deb() {
        let dir = tempfile::tempdir().unwrap();
        let spec_path = dir.path().join("kiln.toml");
        std::fs::write(&spec_path, "architectures = [\"amd64\"]\n").unwrap();
        let pkg = |name: &str, sha: &str| kiln_debian::lock::LockedPackage {
            name: name.into(),
            version: "1.0-1".into(),
            arch: "amd64".into(),
            package_arch: "amd64".into(),
            source: name.into(),
            source_version: "1.0-1".into(),
            url: "http://deb.example/debian/".into(),
            path: format!("pool/main/{name}_1.0-1_amd64.deb"),
            size: 10,
            sha256: sha.into(),
            depends: vec![],
        };
        let lock = kiln_debian::Lock {
            version: kiln_debian::lock::LOCK_VERSION,
            spec_hash: "abc".into(),
            snapshot: vec![],
            package: vec![pkg("libc6", &"a".repeat(64)), pkg("hello", &"b".repeat(64))],
        };
        let p = spec(&spec_path, &lock, 42, &Timing::start()).unwrap();
        assert_eq!(p["buildDefinition"]["buildType"], SPEC_BUILD_TYPE);
        assert_eq!(p["buildDefinition"]["internalParameters"]["SOURCE_DATE_EPOCH"], 42);
        let deps = p["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        let hello = deps.iter().find(|d| d["name"] == "hello").unwrap();
        assert_eq!(hello["digest"]["sha256"], "b".repeat(64));
        assert_eq!(hello["uri"], "pkg:deb/debian/hello@1.0-1?arch=amd64");
        assert_eq!(
            hello["downloadLocation"],
            "http://deb.example/debian/pool/main/hello_1.0-1_amd64.deb"
        );
        assert!(
            deps.iter()
                .any(|d| d["name"] == "libc6" && d["digest"]["sha256"] == "a".repeat(64))
        );
    }
}
