//! SLSA provenance v1 for kiln builds, as the predicate of an in-toto Statement v1.
//!
//! Made from the build's plan alone ([`kiln_plan::plan::BuildPlan`]: its inputs and its
//! resolved steps), never by reading the user's files again. The build types are kiln URIs
//! documented in docs/sign.md:
//! - [`DOCKERFILE_BUILD_TYPE`]: externalParameters name the Dockerfile (path and sha256),
//!   target, platforms and build args (a value that looks like a credential is replaced by
//!   `<redacted>` when the plan is made); resolvedDependencies list the context's git commit
//!   and remote, the Dockerfile, every base and `COPY --from` image by manifest digest, and
//!   every `ADD` URL (by sha256) and `ADD` git repository (by commit).
//! - [`SPEC_BUILD_TYPE`]: the kiln.toml (path and sha256), kiln.lock, and every .deb the
//!   plan installs (name, version, architecture, sha256, download URL).
//!
//! SOURCE_DATE_EPOCH is an internal parameter; `runDetails.metadata` holds the wall-clock
//! start and end of the build and an invocation id.

use std::collections::{BTreeMap, BTreeSet};

use kiln_oci::Digest;
use kiln_plan::inputs::{FileInput, Frontend, GitSource};
use kiln_plan::plan::{Base, BuildPlan, CopyFrom, Op};
use serde::Serialize;

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

/// An in-toto DigestSet: algorithm → hex.
pub type DigestSet = BTreeMap<String, String>;

/// The SLSA v1 provenance predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// What was built, from what.
    pub build_definition: BuildDefinition,
    /// Who built it, and when.
    pub run_details: RunDetails,
}

/// SLSA `buildDefinition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// [`DOCKERFILE_BUILD_TYPE`] or [`SPEC_BUILD_TYPE`].
    pub build_type: String,
    /// What the user asked for.
    pub external_parameters: ExternalParameters,
    /// What kiln decided.
    pub internal_parameters: InternalParameters,
    /// Every input, by digest.
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// The file the build was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceParameter {
    /// Path as the user gave it.
    pub path: String,
    /// Its digest.
    pub digest: DigestSet,
}

/// SLSA `externalParameters` of both build types (fields of the other type are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    /// The Dockerfile or kiln.toml.
    pub source: SourceParameter,
    /// Dockerfile: the target platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    /// Dockerfile: the build args (credential-looking values redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_args: Option<BTreeMap<String, String>>,
    /// Dockerfile: `--target`, or the name of the stage built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// kiln.toml: the Debian architectures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    /// kiln.toml: the lock's hash of the spec's resolution inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_spec_hash: Option<String>,
}

/// SLSA `internalParameters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalParameters {
    /// The time written into the image.
    #[serde(rename = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: i64,
    /// Dockerfile: the platform of the machine that built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_platform: Option<String>,
}

/// An in-toto ResourceDescriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    /// A short name.
    pub name: String,
    /// Where it is.
    pub uri: String,
    /// Its digest.
    pub digest: DigestSet,
    /// Where it was downloaded from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_location: Option<String>,
    /// Role, version, architecture.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// SLSA `runDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunDetails {
    /// kiln, and its version.
    pub builder: Builder,
    /// When, and a unique id.
    pub metadata: RunMetadata,
}

/// SLSA `builder`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Builder {
    /// [`BUILDER_ID`].
    pub id: String,
    /// `{"kiln": VERSION}`.
    pub version: BTreeMap<String, String>,
}

/// SLSA `runDetails.metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunMetadata {
    /// `urn:kiln:build:<random hex>`.
    pub invocation_id: String,
    /// RFC 3339.
    pub started_on: String,
    /// RFC 3339.
    pub finished_on: String,
}

impl Provenance {
    /// The predicate as JSON, for a Statement.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("provenance serialises")
    }
}

fn digest_set(d: &Digest) -> DigestSet {
    BTreeMap::from([(d.algorithm().as_str().to_string(), d.hex().to_string())])
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

fn run_details(timing: &Timing) -> RunDetails {
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    RunDetails {
        builder: Builder {
            id: BUILDER_ID.into(),
            version: BTreeMap::from([("kiln".to_string(), env!("CARGO_PKG_VERSION").to_string())]),
        },
        metadata: RunMetadata {
            invocation_id: format!("urn:kiln:build:{}", hex::encode(nonce)),
            started_on: timing.started.clone(),
            finished_on: now(),
        },
    }
}

fn git_dependency(g: &GitSource) -> ResourceDescriptor {
    let uri = match &g.remote {
        Some(r) => format!("git+{r}@{}", g.commit),
        None => format!("git+file:{}@{}", g.dir, g.commit),
    };
    ResourceDescriptor {
        name: "context".into(),
        uri,
        digest: BTreeMap::from([("gitCommit".to_string(), g.commit.clone())]),
        download_location: None,
        annotations: g.remote.iter().map(|r| ("remote".to_string(), r.clone())).collect(),
    }
}

fn file_dependency(name: &str, f: &FileInput) -> ResourceDescriptor {
    ResourceDescriptor {
        name: name.into(),
        uri: format!("file:{}", f.path),
        digest: digest_set(&f.digest),
        download_location: None,
        annotations: BTreeMap::new(),
    }
}

/// The SLSA v1 predicate of a build, from its plan.
pub fn predicate(plan: &BuildPlan, timing: &Timing) -> Provenance {
    let inputs = &plan.inputs;
    let mut deps: Vec<ResourceDescriptor> = inputs.git.iter().map(git_dependency).collect();
    let sde = plan.platforms.first().map_or(0, |p| p.source_date_epoch);
    let build_definition = match inputs.frontend {
        Frontend::Dockerfile => {
            deps.push(file_dependency("dockerfile", &inputs.source));
            deps.extend(image_dependencies(plan));
            deps.extend(remote_dependencies(plan));
            BuildDefinition {
                build_type: DOCKERFILE_BUILD_TYPE.into(),
                external_parameters: ExternalParameters {
                    source: source_parameter(&inputs.source),
                    platforms: Some(
                        plan.platforms
                            .iter()
                            .map(|p| kiln_plan::platform::format(&p.platform))
                            .collect(),
                    ),
                    build_args: Some(inputs.build_args.clone()),
                    target: inputs.target.clone().or_else(|| {
                        let p = plan.platforms.first()?;
                        p.stages.get(p.target)?.name.clone()
                    }),
                    architectures: None,
                    lock_spec_hash: None,
                },
                internal_parameters: InternalParameters {
                    source_date_epoch: sde,
                    build_platform: inputs.build_platform.as_ref().map(kiln_plan::platform::format),
                },
                resolved_dependencies: deps,
            }
        }
        Frontend::KilnToml => {
            deps.push(file_dependency("kiln.toml", &inputs.source));
            deps.extend(inputs.lock.iter().map(|l| file_dependency("kiln.lock", l)));
            let (arches, debs) = package_dependencies(plan);
            deps.extend(debs);
            BuildDefinition {
                build_type: SPEC_BUILD_TYPE.into(),
                external_parameters: ExternalParameters {
                    source: source_parameter(&inputs.source),
                    platforms: None,
                    build_args: None,
                    target: None,
                    architectures: Some(arches),
                    lock_spec_hash: inputs.spec_hash.clone(),
                },
                internal_parameters: InternalParameters {
                    source_date_epoch: sde,
                    build_platform: None,
                },
                resolved_dependencies: deps,
            }
        }
    };
    Provenance {
        build_definition,
        run_details: run_details(timing),
    }
}

fn source_parameter(f: &FileInput) -> SourceParameter {
    SourceParameter {
        path: f.path.clone(),
        digest: digest_set(&f.digest),
    }
}

/// Every base and `COPY --from` image of the stages built, once each.
fn image_dependencies(plan: &BuildPlan) -> Vec<ResourceDescriptor> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for p in &plan.platforms {
        for st in p.needed_stages() {
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
                    out.push(ResourceDescriptor {
                        name: reference.into(),
                        uri: format!("oci://{reference}@{digest}"),
                        digest: digest_set(digest),
                        download_location: None,
                        annotations: BTreeMap::from([("role".to_string(), role.to_string())]),
                    });
                }
            }
        }
    }
    out
}

/// Every `ADD https://…` (pinned by its sha256) and `ADD` of a git repository (pinned by its
/// commit) of the stages built, once each. Credentials and the query string are left out of
/// the URL: a signed URL's token must not be kept in an attestation, and the digest pins
/// the content anyway.
fn remote_dependencies(plan: &BuildPlan) -> Vec<ResourceDescriptor> {
    let public = |url: &str| {
        let u = kiln_plan::inputs::without_userinfo(url);
        match u.split_once(['?', '#']) {
            Some((base, _)) => base.to_string(),
            None => u,
        }
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for p in &plan.platforms {
        for st in p.needed_stages() {
            for step in &st.steps {
                let Op::Copy(c) = &step.op else { continue };
                let dep = match &c.from {
                    CopyFrom::Url { url, digest, .. } => {
                        let url = public(url);
                        ResourceDescriptor {
                            name: url.clone(),
                            uri: url.clone(),
                            digest: digest_set(digest),
                            download_location: Some(url),
                            annotations: BTreeMap::from([("role".to_string(), "add-url".to_string())]),
                        }
                    }
                    CopyFrom::Git {
                        url, reference, commit, ..
                    } => {
                        let url = public(url);
                        let mut annotations = BTreeMap::from([("role".to_string(), "add-git".to_string())]);
                        if !reference.is_empty() {
                            annotations.insert("ref".to_string(), reference.clone());
                        }
                        ResourceDescriptor {
                            name: url.clone(),
                            uri: format!("git+{url}@{commit}"),
                            digest: BTreeMap::from([("gitCommit".to_string(), commit.clone())]),
                            download_location: None,
                            annotations,
                        }
                    }
                    _ => continue,
                };
                if seen.insert(dep.uri.clone()) {
                    out.push(dep);
                }
            }
        }
    }
    out
}

/// The Debian architectures (sorted) and every .deb the plan installs, sorted by
/// architecture then name, as kiln.lock lists them.
fn package_dependencies(plan: &BuildPlan) -> (Vec<String>, Vec<ResourceDescriptor>) {
    let mut pkgs: Vec<&kiln_plan::lock::LockedPackage> = plan
        .platforms
        .iter()
        .flat_map(|p| &p.stages)
        .flat_map(|s| &s.steps)
        .filter_map(|s| match &s.op {
            Op::Debian(d) => Some(&d.packages),
            _ => None,
        })
        .flatten()
        .collect();
    pkgs.sort_by(|a, b| (&a.arch, &a.name).cmp(&(&b.arch, &b.name)));
    let mut arches: Vec<String> = pkgs.iter().map(|p| p.arch.clone()).collect();
    arches.dedup();
    let deps = pkgs
        .into_iter()
        .map(|p| ResourceDescriptor {
            name: p.name.clone(),
            uri: format!("pkg:deb/debian/{}@{}?arch={}", p.name, p.version, p.package_arch),
            digest: BTreeMap::from([("sha256".to_string(), p.sha256.clone())]),
            download_location: Some(format!("{}/{}", p.url.trim_end_matches('/'), p.path)),
            annotations: BTreeMap::from([
                ("version".to_string(), p.version.clone()),
                ("architecture".to_string(), p.arch.clone()),
            ]),
        })
        .collect();
    (arches, deps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_plan::inputs::Inputs;
    use kiln_plan::plan::{DebianOp, Plan, StagePlan, Step};
    use serde_json::Value;

    /// ADD sources are dependencies: a URL by its sha256 (credentials and query left out),
    /// a git repository by its commit; each once, however many steps or platforms use it.
    #[test]
    fn dockerfile_provenance_lists_add_urls_and_git_sources() {
        let add = |from: CopyFrom| Step {
            line: 0,
            created_by: "ADD".into(),
            op: Op::Copy(kiln_plan::plan::CopyOp::plain(from, vec!["x".into()], "/x")),
        };
        let file = Digest::sha256_of(b"tool");
        let url = || CopyFrom::Url {
            url: "https://user:s3cret@dl.example/tool.tar.gz?X-Amz-Signature=abc".into(),
            digest: file.clone(),
            file_name: "tool.tar.gz".into(),
            mtime: None,
        };
        let git = CopyFrom::Git {
            url: "https://tok@git.example/lib.git".into(),
            reference: "v1".into(),
            commit: "c".repeat(40),
            keep_git_dir: false,
        };
        let stage = StagePlan {
            index: 0,
            name: None,
            line: 0,
            base: Base::Scratch,
            steps: vec![add(url()), add(url()), add(git)],
            config: Default::default(),
            needed: true,
            depends_on: vec![],
        };
        let plan = BuildPlan {
            inputs: Inputs {
                frontend: Frontend::Dockerfile,
                source: FileInput {
                    path: "Dockerfile".into(),
                    digest: Digest::sha256_of(b"FROM scratch"),
                },
                lock: None,
                git: None,
                build_args: BTreeMap::new(),
                target: None,
                build_platform: None,
                spec_hash: None,
            },
            platforms: ["amd64", "arm64"]
                .map(|a| Plan {
                    platform: kiln_plan::platform::debian(a),
                    source_date_epoch: 0,
                    history_comment: None,
                    stages: vec![stage.clone()],
                    target: 0,
                })
                .into(),
        };
        let p = predicate(&plan, &Timing::start()).to_value();
        let text = p.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("tok@") && !text.contains("Signature"),
            "{text}"
        );
        let deps = p["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        let urls: Vec<&Value> = deps.iter().filter(|d| d["annotations"]["role"] == "add-url").collect();
        assert_eq!(urls.len(), 1, "{deps:?}");
        assert_eq!(urls[0]["uri"], "https://dl.example/tool.tar.gz");
        assert_eq!(urls[0]["digest"]["sha256"], file.hex());
        let git: Vec<&Value> = deps.iter().filter(|d| d["annotations"]["role"] == "add-git").collect();
        assert_eq!(git.len(), 1, "{deps:?}");
        assert_eq!(
            git[0]["uri"],
            format!("git+https://git.example/lib.git@{}", "c".repeat(40))
        );
        assert_eq!(git[0]["digest"]["gitCommit"], "c".repeat(40));
        assert_eq!(git[0]["annotations"]["ref"], "v1");
    }

    #[test]
    fn spec_provenance_lists_every_planned_deb() {
        let pkg = |name: &str, sha: &str| kiln_plan::lock::LockedPackage {
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
        let step = |p| Step {
            line: 0,
            created_by: "deb".into(),
            op: Op::Debian(DebianOp { packages: vec![p] }),
        };
        let plan = BuildPlan {
            inputs: Inputs {
                frontend: Frontend::KilnToml,
                source: FileInput {
                    path: "kiln.toml".into(),
                    digest: Digest::sha256_of(b"spec"),
                },
                lock: None,
                git: None,
                build_args: BTreeMap::new(),
                target: None,
                build_platform: None,
                spec_hash: Some("abc".into()),
            },
            platforms: vec![Plan {
                platform: kiln_plan::platform::debian("amd64"),
                source_date_epoch: 42,
                history_comment: None,
                stages: vec![StagePlan {
                    index: 0,
                    name: None,
                    line: 0,
                    base: Base::Scratch,
                    steps: vec![step(pkg("libc6", &"a".repeat(64))), step(pkg("hello", &"b".repeat(64)))],
                    config: Default::default(),
                    needed: true,
                    depends_on: vec![],
                }],
                target: 0,
            }],
        };
        let p = predicate(&plan, &Timing::start()).to_value();
        assert_eq!(p["buildDefinition"]["buildType"], SPEC_BUILD_TYPE);
        assert_eq!(p["buildDefinition"]["internalParameters"]["SOURCE_DATE_EPOCH"], 42);
        assert_eq!(p["buildDefinition"]["externalParameters"]["lockSpecHash"], "abc");
        let deps = p["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        let hello = deps.iter().find(|d| d["name"] == "hello").unwrap();
        assert_eq!(hello["digest"]["sha256"], "b".repeat(64));
        assert_eq!(hello["uri"], "pkg:deb/debian/hello@1.0-1?arch=amd64");
        assert_eq!(
            hello["downloadLocation"],
            "http://deb.example/debian/pool/main/hello_1.0-1_amd64.deb"
        );
        let names: Vec<&str> = deps.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["kiln.toml", "hello", "libc6"], "sorted as kiln.lock lists them");
    }
}
