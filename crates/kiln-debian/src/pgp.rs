//! Just enough OpenPGP (RFC 4880) to check a Debian `InRelease`: cleartext-signed messages,
//! v4 signatures, RSA public keys from a binary or armored keyring, and PKCS#1 v1.5 with
//! SHA-2. Debian's archive keys are RSA; anything else is reported as unsupported, never
//! accepted.
//!
//! Why not an OpenPGP crate: the pure-Rust `pgp` 0.16 took 166 s for a clean debug build on
//! this two-core machine class (measured 2026-11-22; the budget was about 60 s), for the one
//! code path used here; sequoia needs nettle or OpenSSL bindings. This module is about 400
//! lines on `num-bigint` (modular exponentiation), `sha2` and `sha1` (v4 fingerprints only;
//! SHA-1 signatures are refused). It is tested against signatures made by GnuPG at test time
//! and against Debian's real keyring and InRelease files (the network tests).

use num_bigint::BigUint;
use sha1::Sha1;
use sha2::{Digest as _, Sha224, Sha256, Sha384, Sha512};

/// Why a signed message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgpError {
    /// Not a cleartext-signed message at all.
    #[error(
        "not signed: no `-----BEGIN PGP SIGNED MESSAGE-----` block (hint: the mirror must serve a signed InRelease; an unsigned Release is never accepted)"
    )]
    NotSigned,
    /// The armor or packets cannot be parsed.
    #[error("malformed OpenPGP data: {0}")]
    Malformed(String),
    /// A key of the keyring made a signature that does not match the text.
    #[error(
        "BAD signature by key {key}: the signed text was modified or the signature is corrupt (hint: this mirror or the path to it cannot be trusted)"
    )]
    BadSignature {
        /// Fingerprint (or key ID) of the key.
        key: String,
    },
    /// No signature was made by a key in the keyring.
    #[error(
        "no valid signature by a key in the keyring (signed by {signers}) (hint: check `keyring` in kiln.toml names this archive's key, e.g. /usr/share/keyrings/debian-archive-keyring.gpg)"
    )]
    UnknownSigner {
        /// The key IDs that signed.
        signers: String,
    },
}

/// An RSA public key (primary key or subkey) from the keyring.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// v4 fingerprint (20 bytes).
    pub fingerprint: [u8; 20],
    n: BigUint,
    e: BigUint,
    n_len: usize,
}

impl PublicKey {
    /// The 64-bit key ID (last 8 bytes of the fingerprint).
    pub fn key_id(&self) -> [u8; 8] {
        self.fingerprint[12..].try_into().expect("8 bytes")
    }
}

/// The keys of a keyring file.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// RSA keys (primary keys and subkeys alike: any may sign a Release).
    pub keys: Vec<PublicKey>,
}

impl Keyring {
    /// Reads a keyring: binary OpenPGP packets (`.gpg`) or ASCII armor (`.asc`). Keys of
    /// algorithms other than RSA are skipped.
    pub fn parse(data: &[u8]) -> Result<Keyring, PgpError> {
        let bin;
        let data = if data.starts_with(b"-----BEGIN PGP") {
            let text = std::str::from_utf8(data).map_err(|_| PgpError::Malformed("armor is not UTF-8".into()))?;
            bin = dearmor(text)?;
            &bin[..]
        } else {
            data
        };
        let mut keys = Vec::new();
        for (tag, body) in packets(data)? {
            if (tag == 6 || tag == 14)
                && let Some(k) = parse_public_key(body)?
            {
                keys.push(k);
            }
        }
        Ok(Keyring { keys })
    }

    fn find(&self, issuer: &Issuer) -> Option<&PublicKey> {
        self.keys.iter().find(|k| match issuer {
            Issuer::Fingerprint(fp) => &k.fingerprint == fp,
            Issuer::KeyId(id) => &k.key_id() == id,
        })
    }
}

#[derive(Debug, Clone)]
enum Issuer {
    Fingerprint([u8; 20]),
    KeyId([u8; 8]),
}

impl Issuer {
    fn show(&self) -> String {
        match self {
            Issuer::Fingerprint(f) => hex::encode_upper(f),
            Issuer::KeyId(k) => hex::encode_upper(k),
        }
    }
}

/// Checks a cleartext-signed message against the keyring and returns the signed text (with
/// `\n` line ends). At least one signature must be by a key of the keyring and valid, and a
/// keyring key's signature that does not verify fails the whole message.
pub fn verify_cleartext(message: &[u8], keyring: &Keyring) -> Result<String, PgpError> {
    let text = std::str::from_utf8(message).map_err(|_| PgpError::Malformed("message is not UTF-8".into()))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    // Skip anything before the header, then the armor headers up to the blank line.
    loop {
        match lines.next() {
            Some("-----BEGIN PGP SIGNED MESSAGE-----") => break,
            Some(_) => continue,
            None => return Err(PgpError::NotSigned),
        }
    }
    for l in lines.by_ref() {
        if l.trim().is_empty() {
            break;
        }
    }
    let mut body: Vec<&str> = Vec::new();
    let mut found_sig = false;
    for l in lines.by_ref() {
        if l == "-----BEGIN PGP SIGNATURE-----" {
            found_sig = true;
            break;
        }
        body.push(l.strip_prefix("- ").unwrap_or(l));
    }
    if !found_sig {
        return Err(PgpError::Malformed("no signature block after the signed text".into()));
    }
    let mut armor = String::from("-----BEGIN PGP SIGNATURE-----\n");
    for l in lines {
        armor.push_str(l);
        armor.push('\n');
    }
    let sig_bytes = dearmor(&armor)?;
    // The canonical text: trailing spaces and tabs removed, CRLF between lines, none after the last.
    let canonical: Vec<u8> = body
        .iter()
        .map(|l| l.trim_end_matches([' ', '\t']))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    let mut good = false;
    let mut signers = Vec::new();
    for (tag, pkt) in packets(&sig_bytes)? {
        if tag != 2 {
            continue;
        }
        let sig = parse_signature(pkt)?;
        signers.push(
            sig.issuer
                .as_ref()
                .map(Issuer::show)
                .unwrap_or_else(|| "an unnamed key".into()),
        );
        let Some(issuer) = &sig.issuer else { continue };
        let Some(key) = keyring.find(issuer) else { continue };
        if sig.sig_type != 0x01 && sig.sig_type != 0x00 {
            continue;
        }
        match sig.verify(&canonical, key) {
            Ok(()) => good = true,
            Err(()) => {
                return Err(PgpError::BadSignature {
                    key: hex::encode_upper(key.fingerprint),
                });
            }
        }
    }
    if !good {
        return Err(PgpError::UnknownSigner {
            signers: if signers.is_empty() {
                "nobody".into()
            } else {
                signers.join(", ")
            },
        });
    }
    let mut out = body.join("\n");
    out.push('\n');
    Ok(out)
}

struct Signature<'a> {
    sig_type: u8,
    pk_algo: u8,
    hash_algo: u8,
    /// Version through the hashed subpackets: what the trailer hashes.
    hashed_part: &'a [u8],
    issuer: Option<Issuer>,
    left16: [u8; 2],
    s: Vec<u8>,
}

impl Signature<'_> {
    fn verify(&self, data: &[u8], key: &PublicKey) -> Result<(), ()> {
        if self.pk_algo != 1 && self.pk_algo != 3 {
            return Err(());
        }
        let mut trailer = Vec::with_capacity(self.hashed_part.len() + 6);
        trailer.extend_from_slice(self.hashed_part);
        trailer.extend_from_slice(&[0x04, 0xff]);
        trailer.extend_from_slice(&(self.hashed_part.len() as u32).to_be_bytes());
        let (digest, prefix): (Vec<u8>, &[u8]) = match self.hash_algo {
            8 => (hash::<Sha256>(data, &trailer), &DI_SHA256),
            9 => (hash::<Sha384>(data, &trailer), &DI_SHA384),
            10 => (hash::<Sha512>(data, &trailer), &DI_SHA512),
            11 => (hash::<Sha224>(data, &trailer), &DI_SHA224),
            // SHA-1 and MD5 signatures are not trusted.
            _ => return Err(()),
        };
        if digest[..2] != self.left16 {
            return Err(());
        }
        let s = BigUint::from_bytes_be(&self.s);
        if s >= key.n {
            return Err(());
        }
        let m = s.modpow(&key.e, &key.n).to_bytes_be();
        let k = key.n_len;
        let t_len = prefix.len() + digest.len();
        if k < t_len + 11 {
            return Err(());
        }
        let mut expected = vec![0u8; k];
        expected[1] = 0x01;
        for b in &mut expected[2..k - t_len - 1] {
            *b = 0xff;
        }
        expected[k - t_len..k - digest.len()].copy_from_slice(prefix);
        expected[k - digest.len()..].copy_from_slice(&digest);
        // m has its leading zero bytes stripped.
        let mut em = vec![0u8; k.saturating_sub(m.len())];
        em.extend_from_slice(&m);
        if em == expected { Ok(()) } else { Err(()) }
    }
}

fn hash<D: sha2::Digest>(data: &[u8], trailer: &[u8]) -> Vec<u8> {
    let mut h = D::new();
    h.update(data);
    h.update(trailer);
    h.finalize().to_vec()
}

/// DER DigestInfo prefixes (RFC 8017 §9.2 note 1).
const DI_SHA224: [u8; 19] = [
    0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c,
];
const DI_SHA256: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
];
const DI_SHA384: [u8; 19] = [
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30,
];
const DI_SHA512: [u8; 19] = [
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40,
];

fn malformed(what: &str) -> PgpError {
    PgpError::Malformed(what.to_string())
}

/// Splits binary OpenPGP data into (tag, body) packets.
fn packets(mut data: &[u8]) -> Result<Vec<(u8, &[u8])>, PgpError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let h = data[0];
        if h & 0x80 == 0 {
            return Err(malformed("packet header without its high bit"));
        }
        let (tag, len, hlen) = if h & 0x40 == 0 {
            let tag = (h >> 2) & 0x0f;
            match h & 3 {
                0 => (
                    tag,
                    *data.get(1).ok_or_else(|| malformed("truncated header"))? as usize,
                    2,
                ),
                1 => (tag, be(data.get(1..3).ok_or_else(|| malformed("truncated header"))?), 3),
                2 => (tag, be(data.get(1..5).ok_or_else(|| malformed("truncated header"))?), 5),
                _ => (tag, data.len() - 1, 1),
            }
        } else {
            let tag = h & 0x3f;
            let o1 = *data.get(1).ok_or_else(|| malformed("truncated header"))? as usize;
            match o1 {
                0..=191 => (tag, o1, 2),
                192..=223 => {
                    let o2 = *data.get(2).ok_or_else(|| malformed("truncated header"))? as usize;
                    (tag, ((o1 - 192) << 8) + o2 + 192, 3)
                }
                255 => (tag, be(data.get(2..6).ok_or_else(|| malformed("truncated header"))?), 6),
                _ => return Err(malformed("partial body lengths are not used in keys or signatures")),
            }
        };
        let body = data
            .get(hlen..hlen + len)
            .ok_or_else(|| malformed("packet longer than the data"))?;
        out.push((tag, body));
        data = &data[hlen + len..];
    }
    Ok(out)
}

fn be(b: &[u8]) -> usize {
    b.iter().fold(0usize, |acc, &x| (acc << 8) | x as usize)
}

/// Reads a multiprecision integer: bit count, then big-endian bytes.
fn mpi<'a>(data: &mut &'a [u8]) -> Result<&'a [u8], PgpError> {
    let bits = be(data.get(..2).ok_or_else(|| malformed("truncated MPI"))?);
    let len = bits.div_ceil(8);
    let v = data.get(2..2 + len).ok_or_else(|| malformed("truncated MPI"))?;
    *data = &data[2 + len..];
    Ok(v)
}

fn parse_public_key(body: &[u8]) -> Result<Option<PublicKey>, PgpError> {
    if body.first() != Some(&4) {
        return Ok(None); // v3 and v6 keys are not used by Debian's archive
    }
    let algo = *body.get(5).ok_or_else(|| malformed("truncated public key"))?;
    if algo != 1 && algo != 3 {
        return Ok(None);
    }
    let mut rest = &body[6..];
    let n = mpi(&mut rest)?;
    let e = mpi(&mut rest)?;
    let mut h = Sha1::new();
    h.update([0x99]);
    h.update((body.len() as u16).to_be_bytes());
    h.update(body);
    let fingerprint: [u8; 20] = h.finalize().into();
    let n_big = BigUint::from_bytes_be(n);
    Ok(Some(PublicKey {
        fingerprint,
        n_len: (n_big.bits() as usize).div_ceil(8),
        n: n_big,
        e: BigUint::from_bytes_be(e),
    }))
}

fn parse_signature(body: &[u8]) -> Result<Signature<'_>, PgpError> {
    let t = |what| malformed(what);
    if body.first() != Some(&4) {
        return Err(malformed("only version 4 signatures are supported"));
    }
    let sig_type = *body.get(1).ok_or_else(|| t("truncated signature"))?;
    let pk_algo = *body.get(2).ok_or_else(|| t("truncated signature"))?;
    let hash_algo = *body.get(3).ok_or_else(|| t("truncated signature"))?;
    let hashed_len = be(body.get(4..6).ok_or_else(|| t("truncated signature"))?);
    let hashed = body
        .get(6..6 + hashed_len)
        .ok_or_else(|| t("truncated hashed subpackets"))?;
    let p = 6 + hashed_len;
    let unhashed_len = be(body.get(p..p + 2).ok_or_else(|| t("truncated signature"))?);
    let unhashed = body
        .get(p + 2..p + 2 + unhashed_len)
        .ok_or_else(|| t("truncated unhashed subpackets"))?;
    let q = p + 2 + unhashed_len;
    let left16: [u8; 2] = body
        .get(q..q + 2)
        .ok_or_else(|| t("truncated signature"))?
        .try_into()
        .expect("2");
    let mut rest = &body[q + 2..];
    let s = if pk_algo == 1 || pk_algo == 3 {
        mpi(&mut rest)?.to_vec()
    } else {
        Vec::new()
    };
    let mut issuer = None;
    for area in [hashed, unhashed] {
        for (kind, data) in subpackets(area)? {
            match kind & 0x7f {
                33 if data.len() == 21 && data[0] == 4 => {
                    issuer = Some(Issuer::Fingerprint(data[1..].try_into().expect("20")));
                }
                16 if data.len() == 8 && issuer.is_none() => {
                    issuer = Some(Issuer::KeyId(data.try_into().expect("8")));
                }
                _ => {}
            }
        }
    }
    Ok(Signature {
        sig_type,
        pk_algo,
        hash_algo,
        hashed_part: &body[..6 + hashed_len],
        issuer,
        left16,
        s,
    })
}

fn subpackets(mut data: &[u8]) -> Result<Vec<(u8, &[u8])>, PgpError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let o1 = data[0] as usize;
        let (len, hlen) = match o1 {
            0..=191 => (o1, 1),
            192..=254 => (
                ((o1 - 192) << 8) + *data.get(1).ok_or_else(|| malformed("truncated subpacket"))? as usize + 192,
                2,
            ),
            _ => (be(data.get(1..5).ok_or_else(|| malformed("truncated subpacket"))?), 5),
        };
        let sp = data
            .get(hlen..hlen + len)
            .ok_or_else(|| malformed("subpacket longer than its area"))?;
        if let Some((&kind, rest)) = sp.split_first() {
            out.push((kind, rest));
        }
        data = &data[hlen + len..];
    }
    Ok(out)
}

/// Decodes ASCII armor (headers, base64 body, optional `=CRC` line).
fn dearmor(text: &str) -> Result<Vec<u8>, PgpError> {
    let mut in_body = false;
    let mut seen_begin = false;
    let mut b64 = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with("-----BEGIN PGP") {
            seen_begin = true;
            continue;
        }
        if line.starts_with("-----END PGP") {
            break;
        }
        if !seen_begin {
            continue;
        }
        if !in_body {
            if line.is_empty() {
                in_body = true;
            } else if !line.contains(':') {
                // No armor headers: this is already the body.
                in_body = true;
                b64.push_str(line);
            }
            continue;
        }
        if line.starts_with('=') && line.len() == 5 {
            continue; // CRC-24; the signature check is what matters
        }
        b64.push_str(line);
    }
    base64_decode(&b64).ok_or_else(|| malformed("bad base64 in armor"))
}

/// Armor bodies are standard base64; the padding is optional (decoding stops at the first
/// `=`), as GnuPG reads them.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ARMOR: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let body: String = s
        .split('=')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
        .collect();
    ARMOR.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A throwaway GnuPG home with one RSA signing key; returns (home, exported keyring).
    fn gpg_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, Vec<u8>) {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let gpg = |args: &[&str]| {
            let out = Command::new("gpg")
                .arg("--batch")
                .arg("--homedir")
                .arg(&home)
                .args(args)
                .output()
                .expect("gpg (GnuPG) must be installed: scripts/setup installs it");
            assert!(
                out.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("{name} <{name}@example.org>"),
            "rsa2048",
            "sign",
            "never",
        ]);
        let exported = gpg(&["--export"]);
        (home, exported)
    }

    fn clearsign(home: &std::path::Path, text: &str, digest: &str) -> Vec<u8> {
        let mut child = Command::new("gpg")
            .args(["--batch", "--homedir"])
            .arg(home)
            .args(["--digest-algo", digest, "--clearsign"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn gpg_signatures_verify_and_tampering_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (home_a, ring_a) = gpg_key(dir.path(), "archive");
        let (home_b, ring_b) = gpg_key(dir.path(), "other");
        let keyring = Keyring::parse(&ring_a).unwrap();
        assert!(!keyring.keys.is_empty());
        let text = "Origin: Debian\nSuite: stable\nSHA256:\n 0123 10 main/binary-amd64/Packages\n- dash line   \n";
        for digest in ["SHA256", "SHA512"] {
            let signed = clearsign(&home_a, text, digest);
            let got = verify_cleartext(&signed, &keyring).unwrap();
            assert_eq!(got, text, "dash-escaping undone");
            // One changed byte in the signed text.
            let modified = String::from_utf8(signed.clone()).unwrap().replace("0123 10", "0123 11");
            assert!(matches!(
                verify_cleartext(modified.as_bytes(), &keyring),
                Err(PgpError::BadSignature { .. })
            ));
        }
        // Signed by a key that is not in the keyring.
        let other = clearsign(&home_b, text, "SHA256");
        assert!(matches!(
            verify_cleartext(&other, &keyring),
            Err(PgpError::UnknownSigner { .. })
        ));
        // With both keys known, B's signature verifies.
        let mut both = Keyring::parse(&ring_a).unwrap();
        both.keys.extend(Keyring::parse(&ring_b).unwrap().keys);
        assert!(verify_cleartext(&other, &both).is_ok());
        // Unsigned.
        assert_eq!(verify_cleartext(text.as_bytes(), &keyring), Err(PgpError::NotSigned));
        for home in [&home_a, &home_b] {
            let _ = Command::new("gpgconf")
                .arg("--homedir")
                .arg(home)
                .args(["--kill", "gpg-agent"])
                .output();
        }
    }

    #[test]
    fn debian_keyring_parses() {
        let p = std::path::Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
        let data = std::fs::read(p).expect("debian-archive-keyring must be installed (scripts/setup)");
        let k = Keyring::parse(&data).unwrap();
        assert!(k.keys.len() >= 3, "{} keys", k.keys.len());
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert!(base64_decode("a*b").is_none());
    }
}
