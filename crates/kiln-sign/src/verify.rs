//! Verification of everything attached to an image in one pass: the bundle referrers and
//! the cosign tags are listed once, each signature object is fetched once (side by side),
//! and each distinct DSSE envelope is checked once per key and its statement parsed once,
//! whatever the number of keys and wanted types. The same attestation kept as a bundle
//! and as a `.att` layer (the same envelope bytes) is therefore verified and parsed once,
//! and reported under both sources, as checking each alone would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kiln_oci::Descriptor;
use serde::Deserialize;

use crate::envelope::{
    BUNDLE_MEDIA_TYPE, Envelope, IN_TOTO_PAYLOAD_TYPE, PREDICATE_TYPE_ANNOTATION, SIGN_PREDICATE_TYPE,
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_TYPE, SimpleSigning, Subject, pae,
};
use crate::error::Result;
use crate::keys::PublicKey;
use crate::place::{Located, TagKind};
use crate::sign::{BUNDLE_PREDICATE_ANNOTATION, KEY_ID_ANNOTATION, Reason, Rejected, Report, Verified, Want};

/// Signature objects fetched and checked at once (network round trips overlap).
const PARALLEL: usize = 4;

/// Where a signature object was found.
enum Origin {
    /// A bundle referrer (its manifest descriptor).
    Bundle(Descriptor),
    /// A layer of a cosign `.sig` tag: a simple-signing payload.
    Simple(Descriptor),
    /// A layer of a cosign `.att` tag: a DSSE envelope.
    Att(Descriptor),
}

/// One signature object and the wants (indices) it is a candidate for.
struct Object {
    source: String,
    origin: Origin,
    wants: Vec<usize>,
}

/// A signature object as read, before any key is tried.
enum Fetched {
    /// Unreadable or not for this image, whatever the key.
    Failed(Reason),
    /// A DSSE envelope (bundle or `.att` layer) and the key id its wrapper names.
    Dsse { env: Envelope, hint: Option<String> },
    /// A simple-signing payload and its signature (or why the signature is unusable).
    Simple {
        payload: Vec<u8>,
        sig: std::result::Result<Vec<u8>, Reason>,
        hint: Option<String>,
    },
}

/// The checked content of one distinct envelope or payload.
struct Checked {
    /// Per key: whether a signature verifies.
    by_key: Vec<bool>,
    /// The statement (or simple-signing payload), checked against the image, when some key
    /// verified it: its predicate type (`None` for simple signing) and payload, or why it
    /// is not acceptable.
    content: Option<std::result::Result<Content, Reason>>,
}

struct Content {
    predicate_type: Option<String>,
    /// `Err` when it covers another digest (reported only for wanted types).
    names_image: std::result::Result<(), Reason>,
    payload: Arc<serde_json::Value>,
}

/// A [`Report`] whose payloads are shared: the same statement found as a bundle and as a
/// `.att` layer (or verified by several keys) is one parsed value.
#[derive(Debug, Default)]
pub struct SharedReport {
    /// Signatures that verified: where, and the verified payload.
    pub verified: Vec<(String, Arc<serde_json::Value>)>,
    /// Signatures that did not, with reasons.
    pub rejected: Vec<Rejected>,
}

/// An in-toto statement's fields other than the predicate, read from the parsed payload
/// without copying the predicate.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "_type")]
    _kind: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    #[serde(rename = "predicate")]
    _predicate: serde::de::IgnoredAny,
}

/// The DSSE envelope of a v0.3 (or v0.2) Sigstore bundle, moved out of it (as
/// [`crate::envelope::envelope_of_bundle`], without copying the payload).
fn envelope_of_bundle(bundle: &mut serde_json::Value) -> Option<Envelope> {
    let mt = bundle.get("mediaType")?.as_str()?;
    if !mt.starts_with("application/vnd.dev.sigstore.bundle") {
        return None;
    }
    serde_json::from_value(bundle.as_object_mut()?.remove("dsseEnvelope")?).ok()
}

fn malformed(detail: impl Into<String>) -> Reason {
    Reason::Malformed { detail: detail.into() }
}

/// Finds and checks every signature and attestation of the image wanted by `wants`, with
/// every key: `reports[w][k]` is what [`crate::sign::verify`] with `keys[k]` and `wants[w]`
/// reports (bundle referrers first, then the cosign tag's layers, in order). Anything that
/// cannot be read or checked is rejected with a reason; nothing is verified unless a
/// signature verifies with the key and covers the image's digest.
pub fn verify_all(loc: &Located, keys: &[&PublicKey], wants: &[Want]) -> Result<Vec<Vec<Report>>> {
    let shared = verify_shared(loc, keys, wants)?;
    let owned = |p: Arc<serde_json::Value>| Arc::try_unwrap(p).unwrap_or_else(|p| (*p).clone());
    Ok(shared
        .into_iter()
        .map(|per_key| {
            per_key
                .into_iter()
                .map(|r| Report {
                    verified: r
                        .verified
                        .into_iter()
                        .map(|(source, p)| Verified {
                            source,
                            payload: owned(p),
                        })
                        .collect(),
                    rejected: r.rejected,
                })
                .collect()
        })
        .collect())
}

/// [`verify_all`] with shared payloads: `reports[w][k]` for `keys[k]` and `wants[w]`.
pub fn verify_shared(loc: &Located, keys: &[&PublicKey], wants: &[Want]) -> Result<Vec<Vec<SharedReport>>> {
    let objects = list(loc, wants)?;
    let fetched = fetch_all(loc, &objects);
    // Distinct contents: the same envelope as a bundle and a .att layer is checked once.
    let mut distinct: Vec<usize> = vec![];
    let mut same_as: Vec<Option<usize>> = vec![];
    for (i, f) in fetched.iter().enumerate() {
        let earlier = distinct.iter().position(|&j| same_content(&fetched[j], f));
        same_as.push(match (f, earlier) {
            (Fetched::Failed(_), _) => None,
            (_, Some(d)) => Some(d),
            (_, None) => {
                distinct.push(i);
                Some(distinct.len() - 1)
            }
        });
    }
    let checked = parallel(distinct.len(), |d| check(loc, keys, &fetched[distinct[d]]));
    let mut reports: Vec<Vec<SharedReport>> = wants
        .iter()
        .map(|_| keys.iter().map(|_| SharedReport::default()).collect())
        .collect();
    for (i, o) in objects.iter().enumerate() {
        for &w in &o.wants {
            for (k, key) in keys.iter().enumerate() {
                let outcome = match (&fetched[i], same_as[i]) {
                    (Fetched::Failed(r), _) => Err(r.clone()),
                    (f, Some(d)) => outcome(&checked[d], f, k, key, &wants[w]),
                    (_, None) => unreachable!("only failures have no content"),
                };
                let source = o.source.clone();
                match outcome {
                    Ok(Some(payload)) => reports[w][k].verified.push((source, payload)),
                    Ok(None) => {}
                    Err(reason) => reports[w][k].rejected.push(Rejected { source, reason }),
                }
            }
        }
    }
    Ok(reports)
}

/// Fetches every object, side by side. A `.att` layer kiln wrote holds exactly the JSON
/// of the envelope its bundle holds, so a layer whose digest is that of a fetched bundle's
/// envelope is known without reading it (the digest names the bytes); other layers are
/// fetched after the bundles.
fn fetch_all(loc: &Located, objects: &[Object]) -> Vec<Fetched> {
    let is_att = |o: &Object| matches!(o.origin, Origin::Att(_));
    let first: Vec<usize> = (0..objects.len()).filter(|&i| !is_att(&objects[i])).collect();
    let mut out: Vec<Option<Fetched>> = (0..objects.len()).map(|_| None).collect();
    for (i, f) in first
        .iter()
        .zip(parallel(first.len(), |j| fetch(loc, &objects[first[j]])))
    {
        out[*i] = Some(f);
    }
    let later: Vec<usize> = (0..objects.len()).filter(|&i| is_att(&objects[i])).collect();
    let known: Vec<(kiln_oci::Digest, u64, &Envelope)> = if later.is_empty() {
        vec![]
    } else {
        out.iter()
            .flatten()
            .filter_map(|f| match f {
                Fetched::Dsse { env, .. } => {
                    let bytes = serde_json::to_vec(env).ok()?;
                    Some((kiln_oci::Digest::sha256_of(&bytes), bytes.len() as u64, env))
                }
                _ => None,
            })
            .collect()
    };
    let mut unknown = vec![];
    let mut same: Vec<(usize, Fetched)> = vec![];
    for &i in &later {
        let Origin::Att(layer) = &objects[i].origin else {
            continue;
        };
        match known
            .iter()
            .find(|(d, size, _)| *d == layer.digest && *size == layer.size)
        {
            Some((_, _, env)) => same.push((
                i,
                Fetched::Dsse {
                    env: (*env).clone(),
                    hint: layer.annotations.get(KEY_ID_ANNOTATION).cloned(),
                },
            )),
            None => unknown.push(i),
        }
    }
    drop(known);
    for (i, f) in same {
        out[i] = Some(f);
    }
    for (i, f) in unknown
        .iter()
        .zip(parallel(unknown.len(), |j| fetch(loc, &objects[unknown[j]])))
    {
        out[*i] = Some(f);
    }
    out.into_iter().map(|f| f.expect("every object fetched")).collect()
}

/// Runs `f(0..n)` on up to [`PARALLEL`] threads; results in index order.
fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if n <= 1 {
        return (0..n).map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(n) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = f(i);
                    out.lock().expect("not poisoned")[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .expect("not poisoned")
        .into_iter()
        .map(|r| r.expect("every index ran"))
        .collect()
}

/// The bundle referrers and cosign tag layers that are candidates for some want, listed
/// side by side (one referrers call, one read of each tag).
fn list(loc: &Located, wants: &[Want]) -> Result<Vec<Object>> {
    let sig = wants.contains(&Want::Signature);
    let att = wants.iter().any(|w| matches!(w, Want::Attestation(_)));
    let (bundles, sig_tag, att_tag) = std::thread::scope(|s| {
        let sig_tag = s.spawn(move || if sig { loc.read_tag(TagKind::Sig) } else { Ok(None) });
        let att_tag = s.spawn(move || if att { loc.read_tag(TagKind::Att) } else { Ok(None) });
        let bundles = loc.referrers(BUNDLE_MEDIA_TYPE);
        let join = |h: std::thread::ScopedJoinHandle<'_, _>| h.join().expect("listing panicked");
        (bundles, join(sig_tag), join(att_tag))
    });
    let mut out = vec![];
    for r in bundles? {
        let ann_type = r.annotations.get(BUNDLE_PREDICATE_ANNOTATION).map(String::as_str);
        let ws = wanting(wants, |w| match (w, ann_type) {
            (_, None) => true,
            (Want::Signature, Some(t)) => t == SIGN_PREDICATE_TYPE,
            (Want::Attestation(want), Some(t)) => t == want,
        });
        if !ws.is_empty() {
            out.push(Object {
                source: format!("bundle {}", r.digest),
                origin: Origin::Bundle(r),
                wants: ws,
            });
        }
    }
    for (kind, tagged) in [(TagKind::Sig, sig_tag?), (TagKind::Att, att_tag?)] {
        let Some(m) = tagged else { continue };
        let tag = kind.tag(&loc.image.digest);
        for (i, layer) in m.layers.into_iter().enumerate() {
            let ann = layer.annotations.get(PREDICATE_TYPE_ANNOTATION).cloned();
            let ws = wanting(wants, |w| match (kind, w) {
                (TagKind::Sig, Want::Signature) => true,
                (TagKind::Att, Want::Attestation(want)) => ann.as_ref().is_none_or(|t| t == want),
                _ => false,
            });
            if ws.is_empty() {
                continue;
            }
            out.push(Object {
                source: format!("{tag} layer {i}"),
                origin: if kind == TagKind::Sig {
                    Origin::Simple(layer)
                } else {
                    Origin::Att(layer)
                },
                wants: ws,
            });
        }
    }
    Ok(out)
}

fn wanting(wants: &[Want], f: impl Fn(&Want) -> bool) -> Vec<usize> {
    (0..wants.len()).filter(|&i| f(&wants[i])).collect()
}

/// Reads one object: its manifest (bundles), its blob, its envelope or payload.
fn fetch(loc: &Located, o: &Object) -> Fetched {
    let read = || -> std::result::Result<Fetched, Reason> {
        match &o.origin {
            Origin::Bundle(r) => {
                let m = loc.manifest(r).map_err(|e| malformed(e.to_string()))?;
                if m.subject.as_ref().is_some_and(|s| s.digest != loc.image.digest) {
                    return Err(Reason::DigestMismatch {
                        signed: m.subject.map(|s| s.digest.to_string()).unwrap_or_default(),
                        image: loc.image.digest.to_string(),
                    });
                }
                let layer = m
                    .layers
                    .first()
                    .ok_or_else(|| malformed("bundle manifest has no layer"))?;
                let data = loc.blob(layer).map_err(|e| malformed(e.to_string()))?;
                let mut b: serde_json::Value =
                    serde_json::from_slice(&data).map_err(|e| malformed(format!("bundle is not JSON: {e}")))?;
                let hint = b
                    .pointer("/verificationMaterial/publicKey/hint")
                    .and_then(|h| h.as_str())
                    .map(String::from);
                let env = envelope_of_bundle(&mut b)
                    .ok_or_else(|| malformed("not a Sigstore bundle with a DSSE envelope"))?;
                Ok(Fetched::Dsse { env, hint })
            }
            Origin::Att(layer) => {
                let data = loc.blob(layer).map_err(|e| malformed(e.to_string()))?;
                let env: Envelope =
                    serde_json::from_slice(&data).map_err(|e| malformed(format!("not a DSSE envelope: {e}")))?;
                Ok(Fetched::Dsse {
                    env,
                    hint: layer.annotations.get(KEY_ID_ANNOTATION).cloned(),
                })
            }
            Origin::Simple(layer) => {
                let payload = loc.blob(layer).map_err(|e| malformed(e.to_string()))?;
                let sig = match layer.annotations.get(SIGNATURE_ANNOTATION) {
                    None => Err(malformed(format!("layer has no {SIGNATURE_ANNOTATION} annotation"))),
                    Some(s) => B64
                        .decode(s)
                        .map_err(|_| malformed("signature annotation is not base64")),
                };
                Ok(Fetched::Simple {
                    payload,
                    sig,
                    hint: layer.annotations.get(KEY_ID_ANNOTATION).cloned(),
                })
            }
        }
    };
    read().unwrap_or_else(Fetched::Failed)
}

/// Same signed bytes and signatures: the same verification result with every key.
fn same_content(a: &Fetched, b: &Fetched) -> bool {
    match (a, b) {
        (Fetched::Dsse { env: x, .. }, Fetched::Dsse { env: y, .. }) => x == y,
        (
            Fetched::Simple {
                payload: p, sig: Ok(s), ..
            },
            Fetched::Simple {
                payload: q, sig: Ok(t), ..
            },
        ) => p == q && s == t,
        _ => false,
    }
}

/// Verifies one distinct content with every key, then (if any key verified it) parses and
/// checks it against the image once.
fn check(loc: &Located, keys: &[&PublicKey], f: &Fetched) -> Checked {
    match f {
        Fetched::Failed(_) => Checked {
            by_key: vec![false; keys.len()],
            content: None,
        },
        Fetched::Dsse { env, .. } => {
            // As Envelope::verify: an undecodable payload verifies with no key.
            let payload = env.payload_bytes();
            let by_key = match &payload {
                Some(p) => {
                    let msg = pae(&env.payload_type, p);
                    let sigs: Vec<Vec<u8>> = env.signatures.iter().filter_map(|s| B64.decode(&s.sig).ok()).collect();
                    keys.iter().map(|k| sigs.iter().any(|s| k.verify(&msg, s))).collect()
                }
                None => vec![false; keys.len()],
            };
            let content = (by_key.contains(&true)).then(|| statement(loc, env, payload.as_deref().unwrap_or_default()));
            Checked { by_key, content }
        }
        Fetched::Simple { payload, sig, .. } => {
            let by_key: Vec<bool> = match sig {
                Ok(s) => keys.iter().map(|k| k.verify(payload, s)).collect(),
                Err(_) => vec![false; keys.len()],
            };
            let content = (by_key.contains(&true)).then(|| simple(loc, payload));
            Checked { by_key, content }
        }
    }
}

/// A verified DSSE payload as an in-toto statement about the image.
fn statement(loc: &Located, env: &Envelope, payload: &[u8]) -> std::result::Result<Content, Reason> {
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(malformed(format!(
            "DSSE payloadType {:?} is not in-toto",
            env.payload_type
        )));
    }
    let bad = |e: serde_json::Error| malformed(format!("payload is not an in-toto statement: {e}"));
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(bad)?;
    let head = Head::deserialize(&value).map_err(bad)?;
    let names = head.subject.iter().any(|s| {
        s.digest
            .get(loc.image.digest.algorithm().as_str())
            .is_some_and(|h| h == loc.image.digest.hex())
    });
    let names_image = if names {
        Ok(())
    } else {
        Err(Reason::DigestMismatch {
            signed: head
                .subject
                .iter()
                .flat_map(|s| s.digest.iter().map(|(a, h)| format!("{a}:{h}")))
                .collect::<Vec<_>>()
                .join(", "),
            image: loc.image.digest.to_string(),
        })
    };
    Ok(Content {
        predicate_type: Some(head.predicate_type),
        names_image,
        payload: Arc::new(value),
    })
}

/// A verified simple-signing payload about the image.
fn simple(loc: &Located, payload: &[u8]) -> std::result::Result<Content, Reason> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| malformed(format!("payload is not simple-signing JSON: {e}")))?;
    let ss = SimpleSigning::deserialize(&value)
        .map_err(|e| malformed(format!("payload is not simple-signing JSON: {e}")))?;
    if ss.critical.kind != SIMPLE_SIGNING_TYPE {
        return Err(malformed(format!("critical.type is {:?}", ss.critical.kind)));
    }
    if ss.critical.image.docker_manifest_digest != loc.image.digest.to_string() {
        return Err(Reason::DigestMismatch {
            signed: ss.critical.image.docker_manifest_digest,
            image: loc.image.digest.to_string(),
        });
    }
    Ok(Content {
        predicate_type: None,
        names_image: Ok(()),
        payload: Arc::new(value),
    })
}

/// What one object means for one key and one want: verified (with its payload), not a
/// candidate (another predicate type), or rejected.
fn outcome(
    c: &Checked,
    f: &Fetched,
    k: usize,
    key: &PublicKey,
    want: &Want,
) -> std::result::Result<Option<Arc<serde_json::Value>>, Reason> {
    if let Fetched::Simple { sig: Err(r), .. } = f {
        return Err(r.clone());
    }
    if !c.by_key[k] {
        let hint = match f {
            Fetched::Dsse { hint, .. } | Fetched::Simple { hint, .. } => hint.as_deref(),
            Fetched::Failed(_) => None,
        };
        return Err(match hint {
            Some(h) if !h.is_empty() && h != key.key_id() => Reason::WrongKey {
                signed_by: h.to_string(),
            },
            _ => Reason::BadSignature,
        });
    }
    let content = match c.content.as_ref().expect("a key verified it") {
        Ok(content) => content,
        Err(r) => return Err(r.clone()),
    };
    let wanted = match (want, &content.predicate_type) {
        (Want::Signature, None) => true,
        (Want::Signature, Some(t)) => t == SIGN_PREDICATE_TYPE,
        (Want::Attestation(w), Some(t)) => t == w,
        (Want::Attestation(_), None) => false,
    };
    if !wanted {
        return Ok(None);
    }
    content.names_image.clone()?;
    Ok(Some(Arc::clone(&content.payload)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kiln_oci::Store;

    use super::*;
    use crate::keys::PrivateKey;
    use crate::place::locate;
    use crate::sign::tests::image;
    use crate::sign::{attest, sign, verify};

    /// One pass over several keys and wants reports what one `verify` per key and want
    /// reports, and the same statement as a bundle and a .att layer is one shared value.
    #[test]
    fn one_pass_reports_what_each_verification_reports() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        image(&store, "app:1", b"one");
        let loc = locate(&store, "app:1", None).unwrap();
        let (k1, k2, k3) = (PrivateKey::generate(), PrivateKey::generate(), PrivateKey::generate());
        sign(&loc, &k1, &BTreeMap::new()).unwrap();
        sign(&loc, &k2, &BTreeMap::new()).unwrap();
        attest(&loc, &k1, "https://example.com/a/v1", serde_json::json!({"a": 1})).unwrap();
        attest(&loc, &k2, "https://example.com/a/v1", serde_json::json!({"a": 2})).unwrap();
        attest(&loc, &k2, "https://example.com/b/v1", serde_json::json!({"b": 1})).unwrap();
        let publics = [k1.public(), k2.public(), k3.public()];
        let keys: Vec<&PublicKey> = publics.iter().collect();
        let wants = [
            Want::Signature,
            Want::Attestation("https://example.com/a/v1".into()),
            Want::Attestation("https://example.com/b/v1".into()),
            Want::Attestation("https://example.com/c/v1".into()),
        ];
        let all = verify_all(&loc, &keys, &wants).unwrap();
        for (w, want) in wants.iter().enumerate() {
            for (k, key) in keys.iter().enumerate() {
                let one = verify(&loc, key, want).unwrap();
                assert_eq!(
                    serde_json::to_value(&all[w][k]).unwrap(),
                    serde_json::to_value(&one).unwrap(),
                    "want {want:?}, key {k}"
                );
            }
        }
        // Signature: each key verifies its own bundle and .sig layer, and rejects the others.
        assert_eq!(all[0][0].verified.len(), 2);
        assert_eq!(all[0][0].rejected.len(), 2);
        assert!(all[0][2].verified.is_empty());
        // Type b: only k2's, as a bundle and a .att layer sharing one parsed statement.
        let shared = verify_shared(&loc, &keys, &wants).unwrap();
        let b = &shared[2][1].verified;
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(Arc::ptr_eq(&b[0].1, &b[1].1));
        assert_eq!(b[0].1["predicate"]["b"], 1);
        assert!(shared[3].iter().all(|r| r.verified.is_empty() && r.rejected.is_empty()));

        // The .att layers hold the bundles' envelopes: known by digest, never read. With
        // their blobs gone, they still verify; a layer that is not a bundle's is read.
        let att = store
            .resolve(&format!("app:{}", TagKind::Att.tag(&loc.image.digest)))
            .unwrap()
            .unwrap();
        let m: kiln_oci::Manifest = store.read_json(&att.digest).unwrap();
        for l in &m.layers {
            std::fs::remove_file(store.blob_path(&l.digest)).unwrap();
        }
        let again = verify_all(&loc, &keys, &wants).unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&all).unwrap()
        );
        let payload = br#"{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[]}"#;
        loc.append_to_tag(TagKind::Att, crate::envelope::DSSE_MEDIA_TYPE, payload, BTreeMap::new())
            .unwrap();
        let m: kiln_oci::Manifest = store
            .read_json(
                &store
                    .resolve(&format!("app:{}", TagKind::Att.tag(&loc.image.digest)))
                    .unwrap()
                    .unwrap()
                    .digest,
            )
            .unwrap();
        std::fs::remove_file(store.blob_path(&m.layers.last().unwrap().digest)).unwrap();
        let r = verify(&loc, keys[0], &wants[1]).unwrap();
        assert!(
            matches!(&r.rejected.last().unwrap().reason, Reason::Malformed { .. }),
            "{r:?}"
        );
    }
}
