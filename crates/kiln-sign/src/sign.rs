//! Signing and attesting an image, and verifying what is attached to it.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kiln_oci::Descriptor;
use serde::Serialize;

use crate::envelope::{
    BUNDLE_MEDIA_TYPE, DSSE_MEDIA_TYPE, Envelope, IN_TOTO_PAYLOAD_TYPE, PREDICATE_TYPE_ANNOTATION, SIGN_PREDICATE_TYPE,
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SimpleSigning, Statement, bundle,
};
use crate::error::Result;
use crate::keys::{PrivateKey, PublicKey};
use crate::place::{Located, TagKind};

/// Layer annotation with the signing key's id (hex SHA-256 of its public key DER). It only
/// lets verification tell "another key" from "altered"; it is never trusted.
pub const KEY_ID_ANNOTATION: &str = "dev.kiln.signature.keyid";
/// Bundle manifest annotation: what the bundle holds (cosign's BUNDLE_SPEC).
pub const BUNDLE_CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
/// Bundle manifest annotation: the in-toto predicate type inside.
pub const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// What signing wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The cosign-tag manifest (`.sig` or `.att`) after the append.
    pub tagged: Descriptor,
    /// The bundle referrer.
    pub bundle: Descriptor,
}

/// Signs the image's digest in both forms: a simple-signing layer under `sha256-<hex>.sig`
/// and a bundle referrer holding a DSSE in-toto statement (cosign's sign predicate).
pub fn sign(loc: &Located, key: &PrivateKey, annotations: &BTreeMap<String, String>) -> Result<Written> {
    let payload = SimpleSigning::new(&loc.repository, &loc.image.digest, annotations).to_bytes();
    let sig = key.sign(&payload);
    let keyid = key.public().key_id();
    let layer_ann = BTreeMap::from([
        (SIGNATURE_ANNOTATION.to_string(), B64.encode(&sig)),
        (KEY_ID_ANNOTATION.to_string(), keyid),
    ]);
    let tagged = loc.append_to_tag(TagKind::Sig, SIMPLE_SIGNING_MEDIA_TYPE, &payload, layer_ann)?;
    let predicate = serde_json::to_value(annotations).expect("strings serialise");
    let bundle = attach_statement(loc, key, SIGN_PREDICATE_TYPE, predicate)?.1;
    Ok(Written { tagged, bundle })
}

fn attach_statement(
    loc: &Located,
    key: &PrivateKey,
    predicate_type: &str,
    predicate: serde_json::Value,
) -> Result<(Envelope, Descriptor)> {
    let statement = Statement::new(&loc.repository, &loc.image.digest, predicate_type, predicate);
    let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &statement.to_bytes(), key);
    let b = kiln_oci::canonical_json(&bundle(&env, &key.public()));
    let ann = BTreeMap::from([
        (BUNDLE_CONTENT_ANNOTATION.to_string(), "dsse-envelope".to_string()),
        (BUNDLE_PREDICATE_ANNOTATION.to_string(), predicate_type.to_string()),
    ]);
    let d = loc.attach(BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE, b, ann)?;
    Ok((env, d))
}

/// Wraps `predicate` in an in-toto statement about the image, signs it as DSSE, and
/// attaches it both as a `.att` layer and as a bundle referrer.
pub fn attest(loc: &Located, key: &PrivateKey, predicate_type: &str, predicate: serde_json::Value) -> Result<Written> {
    let (env, bundle) = attach_statement(loc, key, predicate_type, predicate)?;
    let ann = BTreeMap::from([
        (PREDICATE_TYPE_ANNOTATION.to_string(), predicate_type.to_string()),
        (KEY_ID_ANNOTATION.to_string(), key.public().key_id()),
    ]);
    let tagged = loc.append_to_tag(TagKind::Att, DSSE_MEDIA_TYPE, &kiln_oci::canonical_json(&env), ann)?;
    Ok(Written { tagged, bundle })
}

/// Why one signature found on the image did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// Made with another key (its key id says so).
    WrongKey {
        /// The key id the signature names.
        signed_by: String,
    },
    /// The signature does not match the signed bytes: the payload or the signature was
    /// altered (or it was made by another key that left no key id).
    BadSignature,
    /// The signature is valid but for another image.
    DigestMismatch {
        /// What the signature covers.
        signed: String,
        /// The image's digest.
        image: String,
    },
    /// The signature object cannot be read.
    Malformed {
        /// What is wrong.
        detail: String,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::WrongKey { signed_by } => write!(f, "wrong key: signed by key {signed_by}, not the given key"),
            Reason::BadSignature => write!(
                f,
                "invalid signature: the payload or the signature was altered, or another key made it"
            ),
            Reason::DigestMismatch { signed, image } => {
                write!(
                    f,
                    "digest mismatch: the signature covers {signed}, but the image is {image}"
                )
            }
            Reason::Malformed { detail } => write!(f, "malformed: {detail}"),
        }
    }
}

/// One signature that verified.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// Where it was found: `bundle sha256:…` or `sha256-….sig layer N`.
    pub source: String,
    /// The verified payload (simple-signing JSON or in-toto statement).
    pub payload: serde_json::Value,
}

/// One signature that did not.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// Where it was found.
    pub source: String,
    /// Why it failed.
    #[serde(flatten)]
    pub reason: Reason,
}

/// The outcome of a verification: passing needs at least one verified signature.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Signatures that verified.
    pub verified: Vec<Verified>,
    /// Signatures that did not, with reasons.
    pub rejected: Vec<Rejected>,
}

/// What to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Image signatures (`kiln verify`).
    Signature,
    /// Attestations of this predicate type (`kiln verify-attestation`).
    Attestation(String),
}

/// Finds and checks every signature (or attestation) of the image: bundle referrers
/// first, then the cosign tag. Anything that cannot be read or checked is rejected with a
/// reason; nothing passes unless a signature verifies with `key` and covers the image's
/// digest. [`crate::verify::verify_all`] does the same for several keys and wants at once.
pub fn verify(loc: &Located, key: &PublicKey, want: &Want) -> Result<Report> {
    let mut r = crate::verify::verify_all(loc, &[key], std::slice::from_ref(want))?;
    Ok(r.remove(0).remove(0))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::place::locate;
    use kiln_oci::{Manifest, Store, canonical_json, media};

    /// An artifact (empty config, as cosign can sign any manifest) named `name`.
    pub(crate) fn image(store: &Store, name: &str, text: &[u8]) -> Descriptor {
        let cfg = store.put_blob(b"{}").unwrap();
        let layer = store.put_blob(text).unwrap();
        let m = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new("application/vnd.oci.empty.v1+json", cfg, 2),
            layers: vec![Descriptor::new(media::OCI_LAYER_TAR, layer, text.len() as u64)],
            subject: None,
            annotations: BTreeMap::new(),
        };
        let bytes = canonical_json(&m);
        let d = Descriptor::new(media::OCI_MANIFEST, store.put_blob(&bytes).unwrap(), bytes.len() as u64);
        store.tag(name, &d).unwrap();
        d
    }

    #[test]
    fn store_images_sign_attest_verify_and_reject() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = image(&store, "app:1", b"one");
        image(&store, "other:1", b"two");
        let key = PrivateKey::generate();
        let loc = locate(&store, "app:1", None).unwrap();
        assert_eq!(loc.image.digest, d.digest);
        let none = verify(&loc, &key.public(), &Want::Signature).unwrap();
        assert!(none.verified.is_empty() && none.rejected.is_empty());

        sign(&loc, &key, &BTreeMap::new()).unwrap();
        // Signing twice adds nothing (deterministic ECDSA, de-duplicated layers).
        sign(&loc, &key, &BTreeMap::new()).unwrap();
        let r = verify(&loc, &key.public(), &Want::Signature).unwrap();
        assert_eq!(r.verified.len(), 2, "{r:?}");
        assert!(r.rejected.is_empty(), "{r:?}");

        let other_key = PrivateKey::generate();
        let r = verify(&loc, &other_key.public(), &Want::Signature).unwrap();
        assert!(r.verified.is_empty());
        assert!(
            r.rejected.iter().all(|x| matches!(x.reason, Reason::WrongKey { .. })),
            "{r:?}"
        );

        attest(&loc, &key, "https://example.com/p/v1", serde_json::json!({"ok": true})).unwrap();
        let r = verify(
            &loc,
            &key.public(),
            &Want::Attestation("https://example.com/p/v1".into()),
        )
        .unwrap();
        assert_eq!(r.verified.len(), 2, "{r:?}");
        assert_eq!(r.verified[0].payload["predicate"]["ok"], true);
        let r = verify(
            &loc,
            &key.public(),
            &Want::Attestation("https://example.com/q/v1".into()),
        )
        .unwrap();
        assert!(
            r.verified.is_empty() && r.rejected.is_empty(),
            "other types are not candidates: {r:?}"
        );

        // app's signatures moved onto `other` are valid but for another digest.
        let sig = store
            .resolve(&format!("app:{}", TagKind::Sig.tag(&d.digest)))
            .unwrap()
            .unwrap();
        let other = locate(&store, "other:1", None).unwrap();
        store
            .tag(&format!("other:{}", TagKind::Sig.tag(&other.image.digest)), &sig)
            .unwrap();
        let r = verify(&other, &key.public(), &Want::Signature).unwrap();
        assert!(r.verified.is_empty());
        assert!(matches!(r.rejected[0].reason, Reason::DigestMismatch { .. }), "{r:?}");
    }
}
