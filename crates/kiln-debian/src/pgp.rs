//! Checking a Debian `InRelease` (a cleartext-signed message) as apt does: with Debian's own
//! verifier, `gpgv`, against the keyring given explicitly, reading its machine-readable
//! `--status-fd` lines. The text kiln goes on to parse is the one gpgv writes (`--output`),
//! never the unverified input.
//!
//! Why gpgv (issue 12.6, decided 2026-12): kiln's earlier hand-written verifier checked RSA
//! correctly but ignored key expiry, revocation, subkey binding, key flags, signature times
//! and critical subpackets. A well-kept implementation does all of that. `sequoia-openpgp`
//! was measured at about 700 s for a clean build on this two-core machine class, and `pgp`
//! at 166 s; gpgv costs no build time, is on every Debian system (apt depends on it) and is
//! what apt itself runs. kiln adds what apt adds on top of it: SHA-1 is a weak digest, a
//! signature by an expired or revoked key (`EXPKEYSIG`, `REVKEYSIG`) or an expired signature
//! (`EXPSIG`) is worthless, any `BADSIG` fails the whole message, and the message must be one
//! signed block with nothing outside it. It also adds a minimum key size, which gpgv 2.2
//! lacks: a signature by an RSA, DSA or Elgamal key of fewer than 2048 bits, or by a subkey
//! whose primary key is one, is worthless (apt passes gpgv `--assert-pubkey-algo
//! >=rsa2048,…` where gpgv has it; sqv's standard policy refuses such RSA keys too). The
//! size is read from the keyring ([`keyring`]), for the fingerprint `VALIDSIG` names.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;

pub mod keyring;

/// The fewest bits kiln accepts in an RSA, DSA or Elgamal key that signs an InRelease (or
/// is the primary key of the subkey that does), as apt's `--assert-pubkey-algo >=rsa2048`.
pub const MIN_KEY_BITS: u32 = 2048;

/// Why a signed message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgpError {
    /// Not a cleartext-signed message at all.
    #[error(
        "not signed: no `-----BEGIN PGP SIGNED MESSAGE-----` block (hint: the mirror must serve a signed InRelease; an unsigned Release is never accepted)"
    )]
    NotSigned,
    /// The armor or packets cannot be parsed, or there is text outside the signed block.
    #[error("malformed signed message: {0} (hint: this mirror or the path to it cannot be trusted)")]
    Malformed(String),
    /// A key of the keyring made a signature that does not match the text.
    #[error(
        "BAD signature by key {key}: the signed text was modified, the signature is corrupt or it carries an unknown critical subpacket (hint: this mirror or the path to it cannot be trusted)"
    )]
    BadSignature {
        /// Key ID of the key.
        key: String,
    },
    /// The only signatures by keys of the keyring cannot be trusted.
    #[error("signature by key {key} is not accepted: {why} (hint: {hint})")]
    Unusable {
        /// Key ID or fingerprint of the key.
        key: String,
        /// Why (expired, revoked, weak digest, unbound subkey…).
        why: String,
        /// What to do.
        hint: &'static str,
    },
    /// No signature was made by a key in the keyring.
    #[error(
        "no valid signature by a key in the keyring (signed by {signers}) (hint: check `keyring` in kiln.toml names this archive's key, e.g. /usr/share/keyrings/debian-archive-keyring.gpg)"
    )]
    UnknownSigner {
        /// The key IDs that signed.
        signers: String,
    },
    /// The keyring cannot be read.
    #[error("keyring {path}: {message}")]
    Keyring {
        /// Keyring path.
        path: String,
        /// Why.
        message: String,
    },
    /// gpgv cannot be run.
    #[error("{0}")]
    Verifier(String),
}

/// Checks a cleartext-signed message against the keyring file (binary OpenPGP keys, as in
/// /usr/share/keyrings, or ASCII armor) and returns the signed text as gpgv wrote it (with a
/// final `\n`). At least one signature must be good and by a valid key of the keyring; any
/// bad signature fails the whole message.
pub fn verify_cleartext(message: &[u8], keyring: &Path) -> Result<String, PgpError> {
    check_shape(message)?;
    let ring_err = |message: String| PgpError::Keyring {
        path: keyring.display().to_string(),
        message,
    };
    let ring = std::fs::read(keyring).map_err(|e| ring_err(e.to_string()))?;
    let dir = tempfile::tempdir().map_err(|e| PgpError::Verifier(format!("cannot make a temporary directory: {e}")))?;
    let (ring_path, binary) = if ring.starts_with(b"-----BEGIN PGP") {
        let bin = dearmor(&ring).ok_or_else(|| ring_err("malformed ASCII armor".into()))?;
        let p = dir.path().join("keyring.gpg");
        std::fs::write(&p, &bin).map_err(|e| PgpError::Verifier(e.to_string()))?;
        (p, bin)
    } else if ring.is_empty() {
        return Err(ring_err("the file is empty".into()));
    } else {
        (std::path::absolute(keyring).map_err(|e| ring_err(e.to_string()))?, ring)
    };
    let sizes = KeySizes::read(&binary);
    let input = dir.path().join("InRelease");
    let output = dir.path().join("Release");
    std::fs::write(&input, message).map_err(|e| PgpError::Verifier(e.to_string()))?;
    let out = Command::new("gpgv")
        .arg("--homedir")
        .arg(dir.path())
        .args(["--status-fd", "1", "--weak-digest", "sha1", "--weak-digest", "ripemd160"])
        .arg("--keyring")
        .arg(&ring_path)
        .arg("--output")
        .arg(&output)
        .arg(&input)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            PgpError::Verifier(format!(
                "cannot run gpgv: {e} (hint: install Debian's gpgv package; kiln checks InRelease signatures with it, as apt does)"
            ))
        })?;
    let status = String::from_utf8_lossy(&out.stdout);
    match judge(&status, &sizes) {
        Verdict::Good => {}
        Verdict::Refused(e) => return Err(e),
        Verdict::Nothing => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
            return Err(if err.contains("keyblock resource") || err.contains("keyring") {
                ring_err(last.trim_start_matches("gpgv: ").to_string())
            } else {
                PgpError::Malformed(format!("gpgv found no signature to check ({})", last.trim()))
            });
        }
    }
    let signed = std::fs::read(&output)
        .map_err(|e| PgpError::Verifier(format!("gpgv reported a good signature but wrote no text: {e}")))?;
    let mut text = String::from_utf8(signed).map_err(|_| PgpError::Malformed("the signed text is not UTF-8".into()))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Checks the shape of a cleartext-signed message, as apt does before trusting it: exactly
/// one signed block, nothing but blank lines before it, and nothing but blank lines after
/// its signature. Text outside the block would never be verified, and two blocks would let
/// a good signature vouch for a stranger's text.
pub fn check_shape(message: &[u8]) -> Result<(), PgpError> {
    let text = std::str::from_utf8(message).map_err(|_| PgpError::Malformed("the message is not UTF-8".into()))?;
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let count = |marker: &str| lines.iter().filter(|l| **l == marker).count();
    let position = |marker: &str| lines.iter().position(|l| *l == marker);
    let Some(begin) = position("-----BEGIN PGP SIGNED MESSAGE-----") else {
        return Err(PgpError::NotSigned);
    };
    if lines[..begin].iter().any(|l| !l.trim().is_empty()) {
        return Err(PgpError::Malformed("text before the signed message".into()));
    }
    for marker in [
        "-----BEGIN PGP SIGNED MESSAGE-----",
        "-----BEGIN PGP SIGNATURE-----",
        "-----END PGP SIGNATURE-----",
    ] {
        match count(marker) {
            1 => {}
            0 => return Err(PgpError::Malformed(format!("no `{marker}` line"))),
            _ => return Err(PgpError::Malformed(format!("more than one `{marker}` line"))),
        }
    }
    let (sig, end) = (
        position("-----BEGIN PGP SIGNATURE-----").unwrap_or(0),
        position("-----END PGP SIGNATURE-----").unwrap_or(0),
    );
    if !(begin < sig && sig < end) {
        return Err(PgpError::Malformed("the signature block is out of order".into()));
    }
    if lines[end + 1..].iter().any(|l| !l.trim().is_empty()) {
        return Err(PgpError::Malformed("text after the signature".into()));
    }
    Ok(())
}

/// What the status lines of one gpgv run say.
#[derive(Debug)]
enum Verdict {
    /// At least one good signature by a valid key, and no bad one.
    Good,
    /// Refused, with the reason.
    Refused(PgpError),
    /// gpgv checked no signature at all.
    Nothing,
}

/// One signature's status lines (between `NEWSIG`s).
#[derive(Debug, Default)]
struct SigStatus {
    good: bool,
    bad: Option<String>,
    unusable: Option<(String, String, &'static str)>,
    unknown: Option<String>,
}

const OLD_KEY: &str = "refresh the keyring (the debian-archive-keyring package) or the mirror; a Release signed only by an expired or revoked key is never trusted";

const WEAK_KEY: &str = "the archive must sign with an RSA or DSA key of at least 2048 bits or an elliptic-curve key, as apt requires; use a mirror or keyring with the archive's current key";

/// The keys of the keyring by fingerprint, or why they cannot be read.
#[derive(Debug, Default)]
struct KeySizes {
    keys: BTreeMap<String, keyring::KeyInfo>,
    error: Option<String>,
}

impl KeySizes {
    fn read(binary_keyring: &[u8]) -> KeySizes {
        match keyring::keys(binary_keyring) {
            Ok(keys) => KeySizes {
                keys: keys.into_iter().map(|k| (k.fingerprint.clone(), k)).collect(),
                error: None,
            },
            Err(e) => KeySizes {
                keys: BTreeMap::new(),
                error: Some(e),
            },
        }
    }

    /// Why a good signature by key `fpr` (whose primary key is `primary`) is worthless
    /// because of the size of either key, if it is.
    fn weakness(&self, fpr: &str, primary: &str) -> Option<(String, String, &'static str)> {
        let roles = [("it is", fpr), ("its primary key {} is", primary)];
        for (i, (role, key)) in roles.into_iter().enumerate() {
            if i == 1 && (key.is_empty() || key == fpr) {
                continue;
            }
            let Some(info) = self.keys.get(key) else {
                let why = self
                    .error
                    .clone()
                    .unwrap_or_else(|| "no key with that fingerprint".into());
                return Some((
                    fpr.to_string(),
                    format!("kiln cannot find key {key} in the keyring to check its size ({why})"),
                    "use a keyring of binary OpenPGP keys (as `gpg --export` writes) or ASCII armor",
                ));
            };
            match info.bits {
                Some(bits) if bits < MIN_KEY_BITS => {
                    let name = keyring::algorithm_name(info.algorithm);
                    return Some((
                        fpr.to_string(),
                        format!(
                            "{} a {bits}-bit {name} key, below the minimum of {MIN_KEY_BITS} bits",
                            role.replace("{}", key)
                        ),
                        WEAK_KEY,
                    ));
                }
                _ => {}
            }
        }
        None
    }
}

fn sig_status(kw: &str, f: &[&str], s: &mut SigStatus, sizes: &KeySizes) {
    let key = f.first().copied().unwrap_or("?").to_string();
    match kw {
        "GOODSIG" => s.good = true,
        "BADSIG" => s.bad = Some(key),
        "EXPKEYSIG" => s.unusable = Some((key, "the key has expired".into(), OLD_KEY)),
        "REVKEYSIG" => s.unusable = Some((key, "the key is revoked".into(), OLD_KEY)),
        "EXPSIG" => s.unusable = Some((key, "the signature has expired".into(), OLD_KEY)),
        "NO_PUBKEY" => s.unknown = Some(key),
        "ERRSIG" => {
            let why = match f.get(5).copied() {
                Some("9") => {
                    s.unknown = Some(key);
                    return;
                }
                Some("4") => "its public-key algorithm is not supported",
                Some("5") => "its digest algorithm is weak or unknown (SHA-1 is refused)",
                Some("6") => "the key is unusable (e.g. a subkey without a valid binding signature)",
                _ => "gpgv cannot check it",
            };
            s.unusable = Some((
                key,
                why.into(),
                "the archive's signature or key is broken; use another mirror or keyring",
            ));
        }
        "VALIDSIG" => {
            // VALIDSIG <fpr> <date> <ts> <expire> <version> <reserved> <pk-algo> <hash-algo> <class> <primary-fpr>
            let (hash, class) = (f.get(7).copied().unwrap_or(""), f.get(8).copied().unwrap_or(""));
            if class != "01" {
                s.unusable = Some((
                    key,
                    format!("signature class 0x{class} is not a canonical-text signature (0x01)"),
                    "the InRelease was not signed as apt expects; use another mirror",
                ));
            } else if !matches!(hash, "8" | "9" | "10" | "11") {
                s.unusable = Some((
                    key,
                    format!("digest algorithm {hash} is not SHA-2"),
                    "the archive must sign with SHA-256 or stronger",
                ));
            } else if let Some(weak) = sizes.weakness(&key, f.get(9).copied().unwrap_or("")) {
                s.unusable = Some(weak);
            }
        }
        _ => {}
    }
}

/// Reads gpgv's `--status-fd` output.
fn judge(status: &str, sizes: &KeySizes) -> Verdict {
    let mut sigs: Vec<SigStatus> = Vec::new();
    for line in status.lines() {
        let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let mut f = rest.split(' ');
        let kw = f.next().unwrap_or("");
        if kw == "NEWSIG" {
            sigs.push(SigStatus::default());
            continue;
        }
        if let Some(s) = sigs.last_mut() {
            sig_status(kw, &f.collect::<Vec<_>>(), s, sizes);
        }
    }
    if let Some(key) = sigs.iter().find_map(|s| s.bad.clone()) {
        return Verdict::Refused(PgpError::BadSignature { key });
    }
    if sigs.iter().any(|s| s.good && s.unusable.is_none()) {
        return Verdict::Good;
    }
    if let Some((key, why, hint)) = sigs.iter().find_map(|s| s.unusable.clone()) {
        return Verdict::Refused(PgpError::Unusable { key, why, hint });
    }
    let unknown: Vec<String> = sigs.iter().filter_map(|s| s.unknown.clone()).collect();
    if !unknown.is_empty() {
        return Verdict::Refused(PgpError::UnknownSigner {
            signers: unknown.join(", "),
        });
    }
    Verdict::Nothing
}

/// Decodes an ASCII-armored keyring (`.asc`) into binary packets; gpgv reads only binary
/// keyrings. Several armor blocks are concatenated.
fn dearmor(data: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim_end);
    while let Some(l) = lines.next() {
        if !l.starts_with("-----BEGIN PGP") {
            continue;
        }
        // Armor headers end at the first blank line.
        for h in lines.by_ref() {
            if h.trim().is_empty() {
                break;
            }
        }
        let mut b64 = String::new();
        for body in lines.by_ref() {
            if body.starts_with("-----END PGP") {
                break;
            }
            if !body.starts_with('=') {
                b64.push_str(body.trim());
            }
        }
        out.extend(base64::engine::general_purpose::STANDARD.decode(b64).ok()?);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &str = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n";

    #[test]
    fn shape() {
        assert_eq!(check_shape(SIGNED.as_bytes()), Ok(()));
        assert_eq!(check_shape(b"Suite: x\n"), Err(PgpError::NotSigned));
        let before = format!("Suite: evil\n{SIGNED}");
        assert!(matches!(check_shape(before.as_bytes()), Err(PgpError::Malformed(m)) if m.contains("before")));
        let after = format!("{SIGNED}Suite: evil\n");
        assert!(matches!(check_shape(after.as_bytes()), Err(PgpError::Malformed(m)) if m.contains("after")));
        let twice = format!("{SIGNED}{SIGNED}");
        assert!(matches!(check_shape(twice.as_bytes()), Err(PgpError::Malformed(m)) if m.contains("more than one")));
    }

    fn sizes() -> KeySizes {
        let key = |fpr: &str, algorithm, bits| {
            (
                fpr.to_string(),
                keyring::KeyInfo {
                    fingerprint: fpr.into(),
                    algorithm,
                    bits,
                },
            )
        };
        KeySizes {
            keys: [
                key("FF", 1, Some(4096)),
                key("WK", 1, Some(1024)),
                key("PD", 17, Some(1024)),
                key("ED", 27, None),
            ]
            .into(),
            error: None,
        }
    }

    fn judge(status: &str) -> Verdict {
        super::judge(status, &sizes())
    }

    #[test]
    fn status_lines() {
        let good = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG AA n\n[GNUPG:] VALIDSIG FF 2026-01-01 1 0 4 0 1 8 01 FF\n";
        assert!(matches!(judge(good), Verdict::Good));
        let expired = "[GNUPG:] NEWSIG\n[GNUPG:] EXPKEYSIG AA n\n[GNUPG:] VALIDSIG FF 2026-01-01 1 0 4 0 1 8 01 FF\n";
        assert!(matches!(judge(expired), Verdict::Refused(PgpError::Unusable { why, .. }) if why.contains("expired")));
        // One expired key and one good one: Debian signs with two keys, the older may expire.
        assert!(matches!(judge(&format!("{expired}{good}")), Verdict::Good));
        let binary = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG AA n\n[GNUPG:] VALIDSIG FF 2026-01-01 1 0 4 0 1 8 00 FF\n";
        assert!(matches!(judge(binary), Verdict::Refused(PgpError::Unusable { .. })));
        let bad = "[GNUPG:] NEWSIG\n[GNUPG:] BADSIG AA n\n";
        assert!(matches!(
            judge(&format!("{good}{bad}")),
            Verdict::Refused(PgpError::BadSignature { .. })
        ));
        let unknown = "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG AA 1 8 01 1 9 -\n[GNUPG:] NO_PUBKEY AA\n";
        assert!(matches!(
            judge(unknown),
            Verdict::Refused(PgpError::UnknownSigner { .. })
        ));
        assert!(matches!(judge(""), Verdict::Nothing));
    }

    #[test]
    fn minimum_key_size() {
        let sig = |fpr: &str, primary: &str| {
            format!(
                "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG AA n\n[GNUPG:] VALIDSIG {fpr} 2026-01-01 1 0 4 0 1 8 01 {primary}\n"
            )
        };
        let refused = |status: &str, want: &str| match judge(status) {
            Verdict::Refused(e @ PgpError::Unusable { .. }) => assert!(e.to_string().contains(want), "{e}"),
            other => panic!("expected {want:?}, got {other:?}"),
        };
        refused(
            &sig("WK", "WK"),
            "signature by key WK is not accepted: it is a 1024-bit RSA key, below the minimum of 2048 bits (hint: the archive must sign",
        );
        // A strong subkey of a weak primary key; a weak subkey of a strong one.
        refused(&sig("FF", "PD"), "its primary key PD is a 1024-bit DSA key");
        refused(&sig("WK", "FF"), "it is a 1024-bit RSA key");
        // Elliptic-curve keys have no bit count to check; old gpgv may omit the primary.
        assert!(matches!(judge(&sig("ED", "ED")), Verdict::Good));
        assert!(matches!(judge(&sig("FF", "").replace(" \n", "\n")), Verdict::Good));
        // A weak signature beside a good one (an archive signing with an old and a new key).
        assert!(matches!(judge(&(sig("WK", "WK") + &sig("FF", "FF"))), Verdict::Good));
        // A key gpgv used that the keyring parse did not find: refused, saying why.
        refused(&sig("AB", "AB"), "kiln cannot find key AB in the keyring");
        let broken = KeySizes {
            error: Some("a packet is cut short".into()),
            ..KeySizes::default()
        };
        let e = super::judge(&sig("FF", "FF"), &broken);
        assert!(format!("{e:?}").contains("a packet is cut short"), "{e:?}");
    }
}
