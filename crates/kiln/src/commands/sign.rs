//! `kiln generate-key-pair`, `sign`, `attest`, `verify`, `verify-attestation`, and the trust
//! steps of `kiln build` (provenance always; `--sign --key`; `--tag-digest`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use kiln_oci::reference::Name;
use kiln_oci::{Descriptor, Store};
use kiln_registry::Session;
use kiln_sign::place::{Located, locate};
use kiln_sign::sign::{Report, Want};
use kiln_sign::{PrivateKey, PublicKey, SignError};

use crate::cli::RegistryFlags;
use crate::error::CliError;

impl From<SignError> for CliError {
    fn from(e: SignError) -> Self {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::env(e)
        }
    }
}

/// `kiln generate-key-pair`.
#[derive(Debug, Args)]
pub struct GenerateKeyPairArgs {
    /// Write PREFIX.key and PREFIX.pub.
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    pub output_key_prefix: PathBuf,
}

/// `kiln sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Private key: cosign.key (password from COSIGN_PASSWORD or a prompt) or a PEM PKCS#8/SEC1 P-256 key.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Extra annotation KEY=VALUE in the signed payload (repeatable).
    #[arg(short = 'a', long = "annotations", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Image: a store name; HOST/REPO:TAG or docker://NAME in a registry (the store keeps a copy of what is written); oci:DIR[:REF] to verify.
    pub image: String,
    /// Work on the store's copy of a registry image (HOST/REPO:TAG) instead of the registry's.
    #[arg(long)]
    pub local: bool,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln attest`.
#[derive(Debug, Args)]
pub struct AttestArgs {
    /// Private key (as for `kiln sign`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The predicate: a JSON file.
    #[arg(long, value_name = "FILE")]
    pub predicate: PathBuf,
    /// Predicate type: slsaprovenance, spdxjson, cyclonedx, vuln, kiln-runtime, custom, or a URI.
    #[arg(long = "type", value_name = "TYPE", default_value = "custom")]
    pub predicate_type: String,
    /// Image: a store name; HOST/REPO:TAG or docker://NAME in a registry (the store keeps a copy of what is written); oci:DIR[:REF] to verify.
    pub image: String,
    /// Work on the store's copy of a registry image (HOST/REPO:TAG) instead of the registry's.
    #[arg(long)]
    pub local: bool,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Key-based only: --certificate and keyless (Fulcio/Rekor) verification are out of scope for now, because kiln works without network access to Sigstore. Exit 1 when no signature verifies."
)]
pub struct VerifyArgs {
    /// Public key (cosign.pub, PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Image: a store name; HOST/REPO:TAG or docker://NAME in a registry (the store keeps a copy of what is written); oci:DIR[:REF] to verify.
    pub image: String,
    /// Work on the store's copy of a registry image (HOST/REPO:TAG) instead of the registry's.
    #[arg(long)]
    pub local: bool,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln verify-attestation`.
#[derive(Debug, Args)]
#[command(
    after_help = "Key-based only: --certificate and keyless (Fulcio/Rekor) verification are out of scope for now, because kiln works without network access to Sigstore. Exit 1 when no attestation of the type verifies."
)]
pub struct VerifyAttestationArgs {
    /// Public key (cosign.pub, PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Predicate type: slsaprovenance, spdxjson, cyclonedx, vuln, kiln-runtime, custom, or a URI.
    #[arg(long = "type", value_name = "TYPE", default_value = "custom")]
    pub predicate_type: String,
    /// Image: a store name; HOST/REPO:TAG or docker://NAME in a registry (the store keeps a copy of what is written); oci:DIR[:REF] to verify.
    pub image: String,
    /// Work on the store's copy of a registry image (HOST/REPO:TAG) instead of the registry's.
    #[arg(long)]
    pub local: bool,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// The trust flags of `kiln build`.
#[derive(Debug, Clone, Args)]
pub struct BuildTrustFlags {
    /// Sign the image and attest its SBOM and provenance with --key.
    #[arg(long, requires = "key")]
    pub sign: bool,
    /// Private key for --sign (as for `kiln sign`).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Also tag every -t NAME as NAME:sha256-<hex> (the image's content-addressed twin; kept in the store, not pushed).
    #[arg(long)]
    pub tag_digest: bool,
    /// Check the signed result against this kiln policy before exporting or pushing; a denied build keeps no tag and pushes nothing (exit 1).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

/// Reads a cosign private key, asking for its password as cosign does.
pub fn read_key(path: &Path) -> Result<PrivateKey, CliError> {
    Ok(PrivateKey::read(path, &mut || kiln_sign::keys::password(false))?)
}

fn parse_annotations(raw: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    raw.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::input(format!("--annotations {a:?}: expected KEY=VALUE (hint: -a env=prod)")))
        })
        .collect()
}

/// Runs `f` on the image: a registry reference's image in its registry, unless `local`
/// asks for the store's copy.
fn with_image<T>(
    store: &Store,
    image: &str,
    flags: &RegistryFlags,
    local: bool,
    f: impl FnOnce(&Located) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let registries = super::registry_access(flags)?;
    // A short digest names the store's image by its full digest.
    let image = match crate::names::parse_image(store, image)? {
        kiln_oci::reference::ImageRef::StoreDigest(d) => d.to_string(),
        _ => image.to_string(),
    };
    let loc = locate(store, &image, (!local).then_some(&registries))?;
    f(&loc)
}

/// `kiln generate-key-pair`.
pub fn generate_key_pair(args: &GenerateKeyPairArgs) -> Result<(), CliError> {
    let pw = kiln_sign::keys::password(true)?;
    let (k, p) = kiln_sign::keys::write_key_pair(&args.output_key_prefix, &pw)?;
    eprintln!("Private key written to {}", k.display());
    eprintln!("Public key written to {}", p.display());
    Ok(())
}

/// `kiln sign`.
pub fn sign(store: &Store, args: &SignArgs) -> Result<(), CliError> {
    let key = read_key(&args.key)?;
    let ann = parse_annotations(&args.annotations)?;
    with_image(store, &args.image, &args.registry, args.local, |loc| {
        kiln_sign::sign::sign(loc, &key, &ann)?;
        eprintln!(
            "signed {} (sha256-….sig and a Sigstore bundle referrer){}",
            loc.display(),
            where_written(loc)
        );
        println!("{}", loc.image.digest);
        Ok(())
    })
}

/// `kiln attest`.
pub fn attest(store: &Store, args: &AttestArgs) -> Result<(), CliError> {
    let key = read_key(&args.key)?;
    let pt = predicate_type(&args.predicate_type)?;
    let data = std::fs::read(&args.predicate)
        .map_err(|e| CliError::input(format!("--predicate {}: {e}", args.predicate.display())))?;
    let predicate: serde_json::Value = serde_json::from_slice(&data).map_err(|e| {
        CliError::input(format!(
            "--predicate {}: not JSON: {e} (hint: the predicate is a JSON document, e.g. an SPDX JSON SBOM)",
            args.predicate.display()
        ))
    })?;
    with_image(store, &args.image, &args.registry, args.local, |loc| {
        kiln_sign::sign::attest(loc, &key, &pt, predicate)?;
        eprintln!(
            "attested {} ({pt}; sha256-….att and a Sigstore bundle referrer){}",
            loc.display(),
            where_written(loc)
        );
        println!("{}", loc.image.digest);
        Ok(())
    })
}

/// Where signatures went, for the confirmation line.
fn where_written(loc: &Located) -> &'static str {
    if loc.is_remote() {
        ", published to the registry with a copy in the store"
    } else {
        ", in the store"
    }
}

fn predicate_type(t: &str) -> Result<String, CliError> {
    kiln_sign::envelope::predicate_type(t).ok_or_else(|| {
        CliError::input(format!(
            "--type {t:?}: unknown predicate type (hint: slsaprovenance, spdxjson, cyclonedx, vuln, kiln-runtime, custom, or a URI such as https://example.com/my-predicate/v1)"
        ))
    })
}

fn report(loc: &Located, r: &Report, what: &str) -> Result<(), CliError> {
    for rej in &r.rejected {
        eprintln!("{}: {}: {}", loc.display(), rej.source, rej.reason);
    }
    if r.verified.is_empty() {
        let why = if r.rejected.is_empty() {
            format!("no {what} found (hint: sign it with `kiln sign --key cosign.key IMAGE`)")
        } else {
            format!(
                "none of the {} {what}s found verified (reasons above)",
                r.rejected.len()
            )
        };
        return Err(CliError {
            code: 1,
            message: format!("{}: {why}", loc.display()),
        });
    }
    eprintln!(
        "Verification for {} --\n  - {} {what}(s) verified with the given key\n  - the signed digest is the image's digest",
        loc.display(),
        r.verified.len()
    );
    let payloads: Vec<&serde_json::Value> = r.verified.iter().map(|v| &v.payload).collect();
    // A closed pipe (`| head`) is not an error of verification.
    let _ = writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&payloads).expect("json")
    );
    Ok(())
}

/// `kiln verify`.
pub fn verify(store: &Store, args: &VerifyArgs) -> Result<(), CliError> {
    let key = PublicKey::read(&args.key)?;
    with_image(store, &args.image, &args.registry, args.local, |loc| {
        let r = kiln_sign::sign::verify(loc, &key, &Want::Signature)?;
        report(loc, &r, "signature")
    })
}

/// `kiln verify-attestation`.
pub fn verify_attestation(store: &Store, args: &VerifyAttestationArgs) -> Result<(), CliError> {
    let key = PublicKey::read(&args.key)?;
    let pt = predicate_type(&args.predicate_type)?;
    with_image(store, &args.image, &args.registry, args.local, |loc| {
        let r = kiln_sign::sign::verify(loc, &key, &Want::Attestation(pt.clone()))?;
        report(loc, &r, "attestation")
    })
}

/// After a push of `image` from `store` to `dest`: sends the signatures, attestations and
/// other referrers kept beside it.
pub fn push_along(s: &Session, store: &Store, image: &Descriptor, dest: &Name) -> Result<usize, CliError> {
    Ok(kiln_sign::place::push_along(s, store, image, dest)?)
}
