//! `kiln build`.

use std::collections::BTreeMap;

use kiln_build::build::DockerfileRequest;
use kiln_build::pipeline::{self, BuildRequest, BuildResult, PipelineError, Source};
use kiln_build::run::exec::SecretSource;
use kiln_build::solver::RunSettings;
use kiln_build::spec::SpecRequest;
use kiln_oci::Store;
use kiln_oci::layer::Compression;
use kiln_oci::reference::ImageRef;

use crate::cli::BuildArgs;
use crate::error::CliError;
use crate::progress::Reporter;

/// An `--output` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    Oci { dest: String, tar: bool },
    Docker { dest: String },
}

fn parse_output(spec: &str) -> Result<Output, CliError> {
    let mut fields = BTreeMap::new();
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            CliError::input(format!(
                "--output {spec:?}: expected key=value pairs (hint: type=oci,dest=out.tar)"
            ))
        })?;
        fields.insert(k.trim().to_string(), v.trim().to_string());
    }
    let dest = fields.get("dest").cloned().ok_or_else(|| {
        CliError::input(format!(
            "--output {spec:?}: dest= is required (hint: type=oci,dest=PATH)"
        ))
    })?;
    let tar = match fields.get("tar").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(CliError::input(format!(
                "--output {spec:?}: tar={other} must be true or false"
            )));
        }
    };
    match fields.get("type").map(String::as_str) {
        Some("oci") => Ok(Output::Oci { dest, tar }),
        Some("docker") => Ok(Output::Docker { dest }),
        other => Err(CliError::input(format!(
            "--output {spec:?}: unsupported type {other:?} (hint: use type=oci or type=docker; images always go to the store too)"
        ))),
    }
}

/// `--build-arg` values: `KEY=VALUE`, or `KEY` taken from the environment.
pub fn parse_build_args(raw: &[String]) -> Vec<(String, String)> {
    raw.iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            // `--build-arg NAME` takes the value from the environment, as docker does.
            None => std::env::var(a).ok().map(|v| (a.clone(), v)),
        })
        .collect()
}

/// Parses `--secret` values (buildx syntax). The value is never read here, only located.
fn parse_secrets(raw: &[String]) -> Result<BTreeMap<String, SecretSource>, CliError> {
    let mut out = BTreeMap::new();
    for spec in raw {
        let mut fields = BTreeMap::new();
        for part in spec.split(',') {
            match part.split_once('=') {
                Some((k, v)) => fields.insert(k.trim().to_string(), v.trim().to_string()),
                None => fields.insert("id".into(), part.trim().to_string()),
            };
        }
        let id = fields.get("id").cloned().filter(|i| !i.is_empty()).ok_or_else(|| {
            CliError::input(format!(
                "--secret {spec:?}: id= is required (hint: --secret id=token,src=./token.txt)"
            ))
        })?;
        let src = fields.get("src").or_else(|| fields.get("source")).cloned();
        let source = match (src, fields.get("env").cloned(), fields.get("type").map(String::as_str)) {
            (Some(p), _, _) => {
                let path = std::path::PathBuf::from(&p);
                if !path.is_file() {
                    return Err(CliError::input(format!(
                        "--secret id={id}: file {p:?} does not exist (hint: give the path of the file holding the secret)"
                    )));
                }
                SecretSource::File(path)
            }
            (None, Some(v), _) => SecretSource::Env(v),
            (None, None, Some("env")) => SecretSource::Env(id.clone()),
            (None, None, _) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
            (None, None, _) => {
                let path = std::path::PathBuf::from(&id);
                if !path.is_file() {
                    return Err(CliError::input(format!(
                        "--secret id={id}: no src= or env= given, and neither ${id} nor a file {id:?} exists (hint: --secret id={id},src=FILE)"
                    )));
                }
                SecretSource::File(path)
            }
        };
        out.insert(id, source);
    }
    Ok(out)
}

/// Parses `--ssh default` / `--ssh ID=SOCKET`.
fn parse_ssh(raw: &[String]) -> Result<BTreeMap<String, std::path::PathBuf>, CliError> {
    let mut out = BTreeMap::new();
    for spec in raw {
        let (id, sock) = match spec.split_once('=') {
            Some((id, s)) => (id.to_string(), std::path::PathBuf::from(s)),
            None => match std::env::var_os("SSH_AUTH_SOCK") {
                Some(s) => (spec.clone(), std::path::PathBuf::from(s)),
                None => {
                    return Err(CliError::input(format!(
                        "--ssh {spec}: SSH_AUTH_SOCK is not set (hint: start an agent, or give --ssh {spec}=SOCKET)"
                    )));
                }
            },
        };
        if !sock.exists() {
            return Err(CliError::input(format!(
                "--ssh {id}: socket {} does not exist (hint: start ssh-agent, or give --ssh {id}=PATH of a running agent's socket)",
                sock.display()
            )));
        }
        out.insert(id, sock);
    }
    Ok(out)
}

/// The build engine's pull policy for the `--pull` flag.
pub fn pull_policy(p: crate::cli::PullPolicy) -> kiln_build::pins::PullPolicy {
    match p {
        crate::cli::PullPolicy::Always => kiln_build::pins::PullPolicy::Always,
        crate::cli::PullPolicy::Missing => kiln_build::pins::PullPolicy::Missing,
        crate::cli::PullPolicy::Never => kiln_build::pins::PullPolicy::Never,
    }
}

/// A lock file error as the CLI reports it (exit 2 for a missing or bad lock).
pub fn lock_err(e: kiln_build::lockfile::LockFileError) -> CliError {
    CliError {
        code: e.exit_code(),
        message: e.to_string(),
    }
}

/// A pipeline error as the CLI reports it: a Dockerfile error with its line and a caret.
fn pipeline_err(e: PipelineError) -> CliError {
    let code = e.exit_code();
    let message = match &e {
        PipelineError::Frontend { error, .. } => render_frontend(error),
        _ => e.to_string(),
    };
    CliError { code, message }
}

/// Renders a located Dockerfile error with the offending line and a caret under it.
pub fn render_frontend(e: &kiln_build::frontend::FrontendError) -> String {
    let mut out = e.to_string();
    if let Ok(src) = std::fs::read_to_string(&e.file)
        && let Some(text) = src.lines().nth(e.line.saturating_sub(1))
    {
        let num = e.line.to_string();
        let lead: String = text
            .chars()
            .take(e.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("\n  {num} | {text}\n  {} | {lead}^", " ".repeat(num.len())));
    }
    out
}

/// Parses `--label KEY=VALUE` flags.
fn parse_labels(raw: &[String]) -> Result<Vec<(String, String)>, CliError> {
    raw.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(CliError::input(format!(
                "--label {l:?}: expected KEY=VALUE (hint: --label org.opencontainers.image.title=app)"
            ))),
        })
        .collect()
}

/// `-f -`: the Dockerfile comes from standard input. It is spooled to a temp dir outside
/// the context (a build never writes into its context); the returned guard removes it.
fn dockerfile_from_stdin(args: &BuildArgs) -> Result<Option<(tempfile::TempDir, std::path::PathBuf)>, CliError> {
    if args.file.as_deref() != Some(std::path::Path::new("-")) {
        return Ok(None);
    }
    if args.locked {
        return Err(CliError::input(
            "--locked needs a Dockerfile file: one read from standard input (-f -) has no Dockerfile.lock beside it (hint: save it to a file and pass -f FILE)",
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("kiln-stdin-")
        .tempdir()
        .map_err(|e| CliError::env(format!("creating a temp dir for the Dockerfile: {e}")))?;
    let path = dir.path().join("Dockerfile");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
        .map_err(|e| CliError::input(format!("-f -: reading the Dockerfile from standard input: {e}")))?;
    if text.trim().is_empty() {
        return Err(CliError::input(
            "-f -: standard input held no Dockerfile (hint: kiln build -f - . < Dockerfile)",
        ));
    }
    std::fs::write(&path, text).map_err(|e| CliError::env(format!("{}: {e}", path.display())))?;
    Ok(Some((dir, path)))
}

/// The frontend's input: a kiln.toml request, or a Dockerfile one (`-f -` spooled first).
fn source(
    args: &BuildArgs,
    compression: Compression,
) -> Result<(Source, Option<(tempfile::TempDir, std::path::PathBuf)>), CliError> {
    if let Some(spec) = kiln_build::spec::find_spec(&args.context, args.file.as_deref()) {
        if args.platform.is_some() || args.target.is_some() || !args.build_args.is_empty() {
            return Err(CliError::input(format!(
                "{}: --platform, --target and --build-arg apply to Dockerfiles (hint: a kiln.toml lists its `architectures`)",
                spec.display()
            )));
        }
        let req = SpecRequest {
            spec,
            tags: args.tags.clone(),
            compression,
            source_date_epoch: args.source_date_epoch,
            // --hermetic: every package pinned, so kiln.lock must match the spec.
            locked: args.locked || args.hermetic,
            no_cache: args.no_cache,
        };
        return Ok((Source::Spec(req), None));
    }
    let stdin_dockerfile = dockerfile_from_stdin(args)?;
    if let Some(n) = &args.network
        && kiln_build::run::exec::Network::parse(n).is_none()
    {
        return Err(CliError::input(format!(
            "--network {n:?} is not a network mode (hint: use default, none or host)"
        )));
    }
    let req = DockerfileRequest {
        context: args.context.clone(),
        dockerfile: match &stdin_dockerfile {
            Some((_, p)) => Some(p.clone()),
            None => args.file.clone(),
        },
        build_args: parse_build_args(&args.build_args),
        target: args.target.clone(),
        platform: None,
        no_cache: args.no_cache,
        compression,
        source_date_epoch: args.source_date_epoch,
        run: RunSettings {
            runtime: args.runtime.clone(),
            secrets: parse_secrets(&args.secrets)?,
            ssh: parse_ssh(&args.ssh)?,
            network: args.network.clone(),
            allow_network_host: allows_network_host(&args.allow)?,
            keep_volatile: args.keep_volatile,
            hermetic: args.hermetic,
        },
        labels: parse_labels(&args.labels)?,
    };
    if args.network.as_deref() == Some("host") && !req.run.allow_network_host {
        return Err(CliError::input(
            "--network=host needs the network.host entitlement (hint: add --allow network.host, as with docker buildx build, if this build may reach the host's services)",
        ));
    }
    Ok((platform_source(req, args.platform.as_deref())?, stdin_dockerfile))
}

/// `--platform`: one platform builds one image; a comma-separated list builds an index.
fn platform_source(mut req: DockerfileRequest, flag: Option<&str>) -> Result<Source, CliError> {
    let platforms = match flag {
        None => return Ok(Source::Dockerfile(Box::new(req))),
        Some(v) => pipeline::platforms::parse_list(v)
            .map_err(|e| CliError::input(format!("--platform {v:?}: {e} (hint: linux/amd64,linux/arm64)")))?,
    };
    if let [one] = platforms.as_slice() {
        req.platform = Some(one.clone());
        return Ok(Source::Dockerfile(Box::new(req)));
    }
    Ok(Source::Platforms(Box::new(req), platforms))
}

/// `--output` values as image references.
fn outputs(args: &BuildArgs) -> Result<Vec<ImageRef>, CliError> {
    args.outputs
        .iter()
        .map(|o| {
            Ok(match parse_output(o)? {
                Output::Oci { dest, tar: false } => ImageRef::OciDir {
                    path: dest.into(),
                    reference: None,
                },
                Output::Oci { dest, tar: true } => ImageRef::OciArchive {
                    path: dest.into(),
                    reference: None,
                },
                Output::Docker { dest } => ImageRef::DockerArchive {
                    path: dest.into(),
                    reference: None,
                },
            })
        })
        .collect()
}

/// The pipeline request the flags describe.
fn request(args: &BuildArgs, source: Source, quiet: bool) -> Result<BuildRequest, CliError> {
    let sign_key = match (&args.trust.key, args.trust.sign) {
        (Some(path), true) => Some(crate::commands::sign::read_key(path)?),
        _ => None,
    };
    let gate = match &args.trust.policy {
        Some(p) if args.tags.is_empty() => {
            return Err(CliError::input(format!(
                "--policy {}: rules match image names, so the build needs a -t NAME (hint: -t 127.0.0.1:5000/prod/app:1)",
                p.display()
            )));
        }
        Some(p) => Some(crate::commands::policy::gate(p)?),
        None => None,
    };
    Ok(BuildRequest {
        source,
        tags: args.tags.clone(),
        registry: crate::commands::registry::progress_options(&args.registry, quiet)?,
        pull: pull_policy(args.pull),
        locked: args.locked,
        write_lock: args.write_lock,
        sbom: args.sbom,
        sbom_stages: args.sbom_stages,
        sign_key,
        tag_digest: args.trust.tag_digest,
        outputs: outputs(args)?,
        push: args.push,
        gate,
        cache: cache_options(args)?,
        hermetic: args.hermetic,
    })
}

/// `--cache-to`, `--cache-from` and `--explain-cache`.
fn cache_options(args: &BuildArgs) -> Result<kiln_build::cache::CacheOptions, CliError> {
    let hint = " (hint: type=registry,ref=HOST/REPO:TAG[,mode=max]; see docs/build.md)";
    Ok(kiln_build::cache::CacheOptions {
        to: args
            .cache_to
            .iter()
            .map(|s| kiln_build::cache::parse_cache_to(s).map_err(|e| CliError::input(format!("{e}{hint}"))))
            .collect::<Result<_, _>>()?,
        from: args
            .cache_from
            .iter()
            .map(|s| kiln_build::cache::parse_cache_from(s).map_err(|e| CliError::input(format!("{e}{hint}"))))
            .collect::<Result<_, _>>()?,
        explain: args.explain_cache,
    })
}

/// The `--metadata-file` document (the keys `docker buildx` writes, plus kiln's).
fn metadata(r: &BuildResult, tags: &[String]) -> serde_json::Value {
    let digest = r.image.digest.to_string();
    if !r.manifests.is_empty() {
        return serde_json::json!({
            "containerimage.digest": digest,
            "containerimage.descriptor": r.image,
            "image.name": tags.join(","),
            "manifests": r.manifests.iter().map(|(arch, d)| serde_json::json!({"architecture": arch, "digest": d.digest.to_string()})).collect::<Vec<_>>(),
            "layers": { "cached": r.cache_hits, "built": r.cache_misses },
            "downloaded": r.downloaded,
        });
    }
    serde_json::json!({
        "containerimage.digest": digest,
        "containerimage.config.digest": r.config_digest.as_ref().map(ToString::to_string),
        "containerimage.descriptor": r.image,
        "image.name": tags.join(","),
        "layers": r.layers.iter().map(|l| serde_json::json!({
            "digest": l.descriptor.digest.to_string(),
            "diffID": l.diff_id.to_string(),
            "size": l.descriptor.size,
            "mediaType": l.descriptor.media_type,
        })).collect::<Vec<_>>(),
        "cache": { "hits": r.cache_hits, "misses": r.cache_misses },
        "kiln.base-images": r.base_images
            .iter()
            .map(|((name, plat), pin)| (format!("{name} {plat}"), serde_json::json!({ "digest": pin.digest })))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// The last progress line: what was built, as what, and how much work it took.
fn summary(r: &BuildResult, tags: &[String]) -> String {
    let named = if tags.is_empty() {
        String::new()
    } else {
        format!(" as {}", tags.join(", "))
    };
    let digest = &r.image.digest;
    if r.manifests.is_empty() {
        format!(
            "built {digest}{named} ({} steps cached, {} run)",
            r.cache_hits, r.cache_misses
        )
    } else {
        format!(
            "built {digest}{named} ({} architectures; {} layers cached, {} built; {} .debs downloaded)",
            r.manifests.len(),
            r.cache_hits,
            r.cache_misses,
            r.downloaded
        )
    }
}

/// Runs `kiln build`: flags into a request, the pipeline, then the digest on stdout.
pub fn build(store: &Store, args: &BuildArgs) -> Result<(), CliError> {
    // Names are checked before any work, so `-t App` fails at once with exit 2.
    for t in &args.tags {
        kiln_oci::reference::Name::parse(t)?;
    }
    // Leftovers of killed builds go first (when no other kiln runs); then a lease for the
    // whole build, so a `prune` waits until every blob it writes (base pulls, layers, the
    // image, its attestations) is referenced by a tag.
    kiln_build::snapshot::clean_if_idle(store)?;
    let _lease = store.lease()?;
    let compression = Compression::parse(&args.compression)
        .ok_or_else(|| CliError::input(format!("--compression {:?}: use gzip, zstd or none", args.compression)))?;
    let (source, _stdin_dockerfile) = source(args, compression)?;
    let quiet = args.quiet || args.progress == crate::cli::ProgressMode::Quiet;
    let reporter = Reporter::new(if quiet {
        crate::cli::ProgressMode::Quiet
    } else {
        args.progress
    });
    let req = request(args, source, quiet)?;
    if args.print_plan {
        let plan = pipeline::plan(store, &req, &reporter).map_err(pipeline_err)?;
        println!("{}", serde_json::to_string_pretty(&plan).expect("plans serialise"));
        return Ok(());
    }
    let result = pipeline::build(store, &req, &reporter).map_err(|e| {
        let err = pipeline_err(e);
        reporter.failed(&err.message);
        err
    })?;
    let digest = result.image.digest.to_string();
    if let Some(f) = &args.iidfile {
        std::fs::write(f, &digest).map_err(|e| CliError::env(format!("{}: {e}", f.display())))?;
    }
    if let Some(f) = &args.metadata_file {
        let meta = metadata(&result, &args.tags);
        std::fs::write(f, serde_json::to_vec_pretty(&meta).expect("json"))
            .map_err(|e| CliError::env(format!("{}: {e}", f.display())))?;
    }
    reporter.info(&summary(&result, &args.tags));
    if let Some(server) = &args.record {
        // The store's copy, by its first name (or digest): what was built, pushed or not.
        let name = args.tags.first().cloned().unwrap_or_else(|| digest.clone());
        let to = super::record::Destination {
            server,
            token_file: None,
            ca: None,
            scan: None,
        };
        let line = super::record::send(store, &name, to, None)?;
        reporter.info(&line);
    }
    println!("{digest}");
    Ok(())
}

/// `--allow` entitlements (BuildKit's names); only network.host exists in kiln, since every
/// step runs sandboxed (no security.insecure).
fn allows_network_host(allow: &[String]) -> Result<bool, CliError> {
    let mut host = false;
    for a in allow.iter().flat_map(|a| a.split(',')).map(str::trim) {
        match a {
            "network.host" => host = true,
            "security.insecure" => {
                return Err(CliError::input(
                    "--allow security.insecure is not supported: kiln runs every RUN step sandboxed (hint: drop it)",
                ));
            }
            other => {
                return Err(CliError::input(format!(
                    "--allow {other:?} is not an entitlement (hint: the one kiln knows is network.host)"
                )));
            }
        }
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        assert_eq!(
            parse_output("type=oci,dest=x,tar=false").unwrap(),
            Output::Oci {
                dest: "x".into(),
                tar: false
            }
        );
        assert_eq!(
            parse_output("type=docker,dest=y").unwrap(),
            Output::Docker { dest: "y".into() }
        );
        assert!(parse_output("type=registry,dest=y").is_err());
        assert!(parse_output("type=oci").is_err());
    }
}
