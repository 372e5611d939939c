//! The signed documents: cosign's simple-signing payload, DSSE envelopes (with the PAE the
//! DSSE spec defines), in-toto Statement v1 and Sigstore bundle v0.3 — own serde models,
//! written with sorted keys so the same input always gives the same bytes.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kiln_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::keys::{PrivateKey, PublicKey};

/// Media type of a simple-signing payload layer in a `.sig` manifest.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding the base64 signature on a `.sig` layer.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of a DSSE envelope layer in a `.att` manifest.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Annotation naming the predicate type on a `.att` layer (cosign's spelling).
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// The in-toto payload type inside DSSE.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// in-toto Statement v1's `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Sigstore bundle v0.3 media type (the artifact type of bundle referrers too).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The predicate type cosign uses for an image signature in bundle form.
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// cosign's simple-signing `critical.type`.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// cosign's simple-signing payload (the "critical" part is what is trusted).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimpleSigning {
    /// What is signed.
    pub critical: Critical,
    /// Free-form annotations (`null` when none, as cosign writes).
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

/// The signed claims of a simple-signing payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Critical {
    /// Where the image was when signed.
    pub identity: Identity,
    /// The image's manifest digest.
    pub image: ImageClaim,
    /// Always [`SIMPLE_SIGNING_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    /// Repository without tag or digest.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageClaim {
    /// `sha256:…`.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl SimpleSigning {
    /// The payload for `digest` in repository `reference`.
    pub fn new(reference: &str, digest: &Digest, annotations: &BTreeMap<String, String>) -> SimpleSigning {
        SimpleSigning {
            critical: Critical {
                identity: Identity {
                    docker_reference: reference.to_string(),
                },
                image: ImageClaim {
                    docker_manifest_digest: digest.to_string(),
                },
                kind: SIMPLE_SIGNING_TYPE.into(),
            },
            optional: (!annotations.is_empty()).then(|| {
                annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect()
            }),
        }
    }

    /// The bytes that are signed (struct field order, as cosign writes them).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain structs serialise")
    }
}

/// DSSE's pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope (JSON form).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    /// Base64 of the payload.
    pub payload: String,
    /// Payload media type.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Signatures over PAE(payloadType, payload).
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnvelopeSignature {
    /// Key hint (may be empty).
    #[serde(default)]
    pub keyid: String,
    /// Base64 signature.
    pub sig: String,
}

impl Envelope {
    /// Signs `payload` with `key`.
    pub fn sign(payload_type: &str, payload: &[u8], key: &PrivateKey) -> Envelope {
        let sig = key.sign(&pae(payload_type, payload));
        Envelope {
            payload: B64.encode(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig: B64.encode(sig),
            }],
        }
    }

    /// The decoded payload, if it is base64.
    pub fn payload_bytes(&self) -> Option<Vec<u8>> {
        B64.decode(&self.payload).ok()
    }

    /// True if any signature verifies with `key`.
    pub fn verify(&self, key: &PublicKey) -> bool {
        let Some(payload) = self.payload_bytes() else {
            return false;
        };
        let msg = pae(&self.payload_type, &payload);
        self.signatures
            .iter()
            .filter_map(|s| B64.decode(&s.sig).ok())
            .any(|sig| key.verify(&msg, &sig))
    }
}

/// An in-toto Statement v1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub kind: String,
    /// What the statement is about.
    pub subject: Vec<Subject>,
    /// Predicate type URI.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    pub predicate: serde_json::Value,
}

/// An in-toto resource descriptor used as a subject.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subject {
    /// The image name (repository).
    pub name: String,
    /// `{"sha256": hex}`.
    pub digest: BTreeMap<String, String>,
}

impl Statement {
    /// A statement about the image `digest` named `name`.
    pub fn new(name: &str, digest: &Digest, predicate_type: &str, predicate: serde_json::Value) -> Statement {
        Statement {
            kind: STATEMENT_TYPE.into(),
            subject: vec![Subject {
                name: name.to_string(),
                digest: BTreeMap::from([(digest.algorithm().as_str().to_string(), digest.hex().to_string())]),
            }],
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }

    /// Canonical bytes (sorted keys).
    pub fn to_bytes(&self) -> Vec<u8> {
        kiln_oci::canonical_json(self)
    }

    /// True if a subject names exactly `digest`.
    pub fn names(&self, digest: &Digest) -> bool {
        self.subject.iter().any(|s| {
            s.digest
                .get(digest.algorithm().as_str())
                .is_some_and(|h| h == digest.hex())
        })
    }
}

/// A Sigstore bundle v0.3 carrying a DSSE envelope, verified by a public key (no
/// certificate, no transparency log: kiln works offline).
pub fn bundle(envelope: &Envelope, key: &PublicKey) -> serde_json::Value {
    serde_json::json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": { "hint": key.key_id() },
            "tlogEntries": [],
            "timestampVerificationData": { "rfc3161Timestamps": [] },
        },
        "dsseEnvelope": {
            "payload": envelope.payload,
            "payloadType": envelope.payload_type,
            "signatures": envelope.signatures.iter().map(|s| serde_json::json!({"sig": s.sig, "keyid": s.keyid})).collect::<Vec<_>>(),
        },
    })
}

/// The DSSE envelope inside a bundle, if it is a v0.3 (or v0.2) DSSE bundle.
pub fn envelope_of_bundle(bundle: &serde_json::Value) -> Option<Envelope> {
    let mt = bundle.get("mediaType")?.as_str()?;
    if !mt.starts_with("application/vnd.dev.sigstore.bundle") {
        return None;
    }
    serde_json::from_value(bundle.get("dsseEnvelope")?.clone()).ok()
}

/// Maps `kiln attest --type` shorthands to predicate type URIs (cosign's names); a value
/// with `://` is taken as a URI as it is.
pub fn predicate_type(short: &str) -> Option<String> {
    let uri = match short {
        "slsaprovenance" | "slsaprovenance1" => "https://slsa.dev/provenance/v1",
        "slsaprovenance02" => "https://slsa.dev/provenance/v0.2",
        "spdxjson" => "https://spdx.dev/Document",
        "spdx" => "https://spdx.dev/Document",
        "cyclonedx" => "https://cyclonedx.org/bom",
        "vuln" => "https://cosign.sigstore.dev/attestation/vuln/v1",
        "custom" => "https://cosign.sigstore.dev/attestation/v1",
        // `kiln harden --format json`: how the image must run (docs/harden.md).
        "kiln-runtime" => "https://kiln.dev/attestation/runtime/v1",
        s if s.contains("://") => s,
        _ => return None,
    };
    Some(uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // DSSE protocol.md's worked example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn envelope_sign_verify_and_tamper() {
        let k = PrivateKey::generate();
        let e = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}", &k);
        assert!(e.verify(&k.public()));
        assert!(!e.verify(&PrivateKey::generate().public()));
        let mut t = e.clone();
        t.payload = B64.encode(b"{\"a\":2}");
        assert!(!t.verify(&k.public()));
        let mut t = e.clone();
        t.payload_type = "text/plain".into();
        assert!(!t.verify(&k.public()));
        let b = bundle(&e, &k.public());
        assert_eq!(envelope_of_bundle(&b).unwrap(), e);
    }

    #[test]
    fn simple_signing_shape() {
        let d = Digest::sha256_of(b"m");
        let p = SimpleSigning::new("127.0.0.1:5000/app", &d, &BTreeMap::new());
        let s = String::from_utf8(p.to_bytes()).unwrap();
        assert_eq!(
            s,
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"127.0.0.1:5000/app\"}},\"image\":{{\"docker-manifest-digest\":\"{d}\"}},\"type\":\"cosign container image signature\"}},\"optional\":null}}"
            )
        );
        assert_eq!(predicate_type("spdxjson").unwrap(), "https://spdx.dev/Document");
        assert!(predicate_type("bogus").is_none());
    }
}
