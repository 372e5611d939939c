//! `kiln build`.

use std::collections::BTreeMap;

use kiln_build::build::{BuildRequest, prepare_with, run};
use kiln_build::error::BuildError;
use kiln_build::run::exec::SecretSource;
use kiln_build::solver::RunSettings;
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

fn parse_build_args(raw: &[String]) -> Vec<(String, String)> {
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

/// Renders a located Dockerfile error with the offending line and a caret under it.
fn render_frontend(e: &kiln_build::frontend::FrontendError) -> String {
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

/// Runs `kiln build`.
pub fn build(store: &Store, args: &BuildArgs) -> Result<(), CliError> {
    if let Some(spec) = kiln_build::spec::find_spec(&args.context, args.file.as_deref()) {
        return crate::commands::lock::build_spec(store, args, &spec);
    }
    let compression = Compression::parse(&args.compression)
        .ok_or_else(|| CliError::input(format!("--compression {:?}: use gzip, zstd or none", args.compression)))?;
    let platform = match &args.platform {
        Some(p) => Some(kiln_build::platform::parse(p).ok_or_else(|| {
            CliError::input(format!(
                "--platform {p:?}: expected os/arch[/variant] (hint: linux/amd64)"
            ))
        })?),
        None => None,
    };
    let outputs = args
        .outputs
        .iter()
        .map(|o| parse_output(o))
        .collect::<Result<Vec<_>, _>>()?;
    let req = BuildRequest {
        context: args.context.clone(),
        dockerfile: args.file.clone(),
        build_args: parse_build_args(&args.build_args),
        target: args.target.clone(),
        platform,
        no_cache: args.no_cache,
        compression,
        source_date_epoch: args.source_date_epoch,
        run: RunSettings {
            runtime: args.runtime.clone(),
            secrets: parse_secrets(&args.secrets)?,
            ssh: parse_ssh(&args.ssh)?,
            network: args.network.clone(),
            keep_volatile: args.keep_volatile,
        },
    };
    if let Some(n) = &args.network
        && kiln_build::run::exec::Network::parse(n).is_none()
    {
        return Err(CliError::input(format!(
            "--network {n:?} is not a network mode (hint: use default, none or host)"
        )));
    }
    let reporter = Reporter::new(if args.quiet {
        crate::cli::ProgressMode::Quiet
    } else {
        args.progress
    });
    let pins = crate::commands::registry::BasePins::new(store, args)?;
    let timing = kiln_sign::provenance::Timing::start();
    let prepared = prepare_with(&req, &|n, p| pins.resolve(n, p)).map_err(|e| match &e {
        BuildError::Frontend(f) => CliError::input(render_frontend(f)),
        _ => CliError::from(e),
    })?;
    if args.print_plan {
        println!(
            "{}",
            serde_json::to_string_pretty(&prepared.plan).expect("plans serialise")
        );
        return Ok(());
    }
    for w in &prepared.warnings {
        kiln_build::solver::Progress::warn(&reporter, w);
    }
    pins.write_lock()?;
    let solved = run(store, &prepared, &req, &args.tags, &reporter)?;
    let digest = solved.manifest.digest.to_string();
    if args.sbom {
        sbom_for_build(store, args, &prepared, &req, &solved.manifest, &reporter)?;
    }
    if let Some(f) = &args.iidfile {
        std::fs::write(f, &digest).map_err(|e| CliError::env(format!("{}: {e}", f.display())))?;
    }
    if let Some(f) = &args.metadata_file {
        let meta = serde_json::json!({
            "containerimage.digest": digest,
            "containerimage.config.digest": solved.config_digest.to_string(),
            "containerimage.descriptor": solved.manifest,
            "image.name": args.tags.join(","),
            "layers": solved.layers.iter().map(|l| serde_json::json!({
                "digest": l.descriptor.digest.to_string(),
                "diffID": l.diff_id.to_string(),
                "size": l.descriptor.size,
                "mediaType": l.descriptor.media_type,
            })).collect::<Vec<_>>(),
            "cache": { "hits": solved.cache_hits, "misses": solved.cache_misses },
            "kiln.base-images": pins.json(),
        });
        std::fs::write(f, serde_json::to_vec_pretty(&meta).expect("json"))
            .map_err(|e| CliError::env(format!("{}: {e}", f.display())))?;
    }
    let provenance = kiln_sign::provenance::dockerfile(&prepared, &req, &timing)?;
    crate::commands::sign::after_build(store, &args.trust, &args.tags, &solved.manifest, provenance)?;
    for o in &outputs {
        let dest = match o {
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
        };
        kiln_oci::transport::export(store, &solved.manifest, &dest, &args.tags)?;
    }
    if args.push {
        pins.push(&solved.manifest, &args.tags)?;
    }
    reporter.info(&format!(
        "built {digest}{} ({} steps cached, {} run)",
        if args.tags.is_empty() {
            String::new()
        } else {
            format!(" as {}", args.tags.join(", "))
        },
        solved.cache_hits,
        solved.cache_misses
    ));
    println!("{digest}");
    Ok(())
}

/// The SBOM of a built image (and, with `--sbom-stages`, of its builder stages, which
/// are solved again from the cache to learn their layers), attached in the store.
fn sbom_for_build(
    store: &Store,
    args: &BuildArgs,
    prepared: &kiln_build::build::Prepared,
    req: &BuildRequest,
    image: &kiln_oci::Descriptor,
    reporter: &Reporter,
) -> Result<(), CliError> {
    let mut stages = vec![];
    if args.sbom_stages {
        for plan in crate::commands::sbom::stage_plans(&prepared.plan) {
            let opts = kiln_build::solver::SolveOptions {
                file_name: prepared.file_name.clone(),
                context: &prepared.context,
                compression: req.compression,
                no_cache: false,
                progress: &kiln_build::solver::Quiet,
                run: req.run.clone(),
            };
            let solved = kiln_build::solver::solve(store, &plan, &opts)?;
            stages.push(solved.layers.iter().map(|l| l.descriptor.clone()).collect());
        }
    }
    let b = crate::commands::sbom::BuildSbom {
        image,
        stages,
        source_date_epoch: Some(prepared.plan.source_date_epoch),
    };
    let n = crate::commands::sbom::attach_to_build(store, &b, &|w| kiln_build::solver::Progress::warn(reporter, w))?;
    match n {
        Some(n) => reporter.info(&format!("sbom: {n} packages (SPDX and CycloneDX attached)")),
        None => reporter.info("sbom: already attached to this image"),
    }
    Ok(())
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
