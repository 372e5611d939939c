//! Keys in the formats cosign uses, so a key pair works with either tool.
//!
//! - `cosign.key`: PEM "ENCRYPTED SIGSTORE PRIVATE KEY" (cosign also reads and once wrote
//!   "ENCRYPTED COSIGN PRIVATE KEY"). The body is JSON: scrypt parameters and salt, a NaCl
//!   secretbox nonce, and the secretbox (tag first, as NaCl lays it out) of the PKCS#8 DER
//!   of an ECDSA P-256 key. Byte strings are standard base64, as Go's encoding/json writes
//!   `[]byte`.
//! - `cosign.pub`: PEM "PUBLIC KEY" (SubjectPublicKeyInfo).
//! - Plain PEM "PRIVATE KEY" (PKCS#8) and "EC PRIVATE KEY" (SEC1) are read too.
//!
//! Passwords and private keys are never printed, logged or stored outside the key file.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, KeyInit};
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::{Result, SignError};

/// PEM label cosign writes today.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label older cosign releases wrote; still read.
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// cosign's scrypt cost: N = 2^15, r = 8, p = 1.
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// Largest N accepted from a key file, so a hostile file cannot ask for gigabytes.
const MAX_LOG_N: u8 = 20;

#[derive(Serialize, Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// A private key ready to sign. Its Debug output never shows the key.
pub struct PrivateKey {
    key: SigningKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(ecdsa-p256, {})", self.public().key_id())
    }
}

/// A public key that verifies signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random number generator is available");
    b
}

fn key_err(path: &Path, reason: impl Into<String>, hint: impl Into<String>) -> SignError {
    SignError::Key {
        path: path.to_path_buf(),
        reason: reason.into(),
        hint: hint.into(),
    }
}

impl PrivateKey {
    /// A fresh random P-256 key from the OS generator.
    pub fn generate() -> PrivateKey {
        loop {
            let bytes: [u8; 32] = random();
            if let Ok(key) = SigningKey::from_slice(&bytes) {
                return PrivateKey { key };
            }
        }
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }

    /// Signs `data` (hashed with SHA-256): an ASN.1 DER ECDSA signature, what cosign and
    /// `openssl dgst -sha256 -sign` produce.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let digest = sha2::Sha256::digest(data);
        let sig: Signature = self.key.sign_prehash(&digest).expect("a 32-byte prehash always signs");
        sig.to_der().as_bytes().to_vec()
    }

    /// cosign's encrypted PEM of this key, sealed with `password` (may be empty).
    pub fn to_cosign_pem(&self, password: &[u8]) -> String {
        let der = self.key.to_pkcs8_der().expect("P-256 keys encode as PKCS#8");
        let salt: [u8; 32] = random();
        let nonce: [u8; 24] = random();
        let box_key = derive(password, &salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P).expect("fixed parameters are valid");
        let sealed = XSalsa20Poly1305::new((&box_key).into())
            .encrypt((&nonce).into(), der.as_bytes())
            .expect("secretbox sealing does not fail");
        let doc = Encrypted {
            kdf: Kdf {
                name: "scrypt".into(),
                params: KdfParams {
                    n: 1 << SCRYPT_LOG_N,
                    r: SCRYPT_R,
                    p: SCRYPT_P,
                },
                salt: B64.encode(salt),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: B64.encode(nonce),
            },
            ciphertext: B64.encode(sealed),
        };
        let json = serde_json::to_vec(&doc).expect("plain structs serialise");
        pem_rfc7468::encode_string(SIGSTORE_PRIVATE_KEY_LABEL, pem_rfc7468::LineEnding::LF, &json)
            .expect("PEM encoding of bytes does not fail")
    }

    /// Reads a private key file: cosign's encrypted PEM (opened with the password that
    /// `password` returns, asked only for encrypted keys), or plain PKCS#8 / SEC1 PEM.
    pub fn read(path: &Path, password: &mut dyn FnMut() -> Result<Vec<u8>>) -> Result<PrivateKey> {
        let text = std::fs::read_to_string(path).map_err(|source| SignError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        PrivateKey::from_pem(path, &text, password)
    }

    /// [`PrivateKey::read`] on text already in memory; `path` is only for messages.
    pub fn from_pem(path: &Path, text: &str, password: &mut dyn FnMut() -> Result<Vec<u8>>) -> Result<PrivateKey> {
        let (label, body) = pem_rfc7468::decode_vec(text.trim().as_bytes()).map_err(|e| {
            key_err(
                path,
                format!("not a PEM file ({e})"),
                "give cosign.key from `kiln generate-key-pair` or `cosign generate-key-pair`, or a PEM PKCS#8/SEC1 P-256 key",
            )
        })?;
        match label {
            SIGSTORE_PRIVATE_KEY_LABEL | COSIGN_PRIVATE_KEY_LABEL => {
                let pw = password()?;
                let der = open_encrypted(path, &body, &pw)?;
                PrivateKey::from_pkcs8(path, &der)
            }
            "PRIVATE KEY" => PrivateKey::from_pkcs8(path, &body),
            "EC PRIVATE KEY" => {
                let sk = p256::SecretKey::from_sec1_der(&body).map_err(|_| {
                    key_err(
                        path,
                        "the SEC1 key is not an ECDSA P-256 key",
                        "kiln signs with P-256 keys only",
                    )
                })?;
                Ok(PrivateKey { key: sk.into() })
            }
            "ENCRYPTED PRIVATE KEY" => Err(key_err(
                path,
                "password-protected PKCS#8 is not supported",
                "convert it with `openssl pkcs8 -in KEY -out plain.pem` or import it into cosign's format",
            )),
            other => Err(key_err(
                path,
                format!("PEM block {other:?} is not a private key"),
                "give the private key (cosign.key), not the public key",
            )),
        }
    }

    fn from_pkcs8(path: &Path, der: &[u8]) -> Result<PrivateKey> {
        let key = SigningKey::from_pkcs8_der(der).map_err(|_| {
            key_err(
                path,
                "the PKCS#8 key is not an ECDSA P-256 key",
                "kiln signs with ECDSA P-256 keys, as cosign generates them",
            )
        })?;
        Ok(PrivateKey { key })
    }
}

fn derive(password: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32) -> Option<[u8; 32]> {
    let params = scrypt::Params::new(log_n, r, p, 32).ok()?;
    let mut out = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut out).ok()?;
    Some(out)
}

fn open_encrypted(path: &Path, body: &[u8], password: &[u8]) -> Result<Vec<u8>> {
    let malformed = |what: &str| {
        key_err(
            path,
            format!("malformed encrypted key: {what}"),
            "the file is damaged; generate a new key pair",
        )
    };
    let doc: Encrypted = serde_json::from_slice(body).map_err(|_| malformed("not the JSON cosign writes"))?;
    if doc.kdf.name != "scrypt" {
        return Err(malformed(&format!("unknown key derivation {:?}", doc.kdf.name)));
    }
    if doc.cipher.name != "nacl/secretbox" {
        return Err(malformed(&format!("unknown cipher {:?}", doc.cipher.name)));
    }
    let n = doc.kdf.params.n;
    if !n.is_power_of_two()
        || n < 2
        || n.trailing_zeros() > MAX_LOG_N as u32
        || doc.kdf.params.r > 32
        || doc.kdf.params.p > 16
    {
        return Err(malformed("scrypt parameters out of range"));
    }
    let salt = B64.decode(&doc.kdf.salt).map_err(|_| malformed("salt is not base64"))?;
    let nonce: [u8; 24] = B64
        .decode(&doc.cipher.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| malformed("nonce is not 24 bytes of base64"))?;
    let sealed = B64
        .decode(&doc.ciphertext)
        .map_err(|_| malformed("ciphertext is not base64"))?;
    let box_key = derive(
        password,
        &salt,
        n.trailing_zeros() as u8,
        doc.kdf.params.r,
        doc.kdf.params.p,
    )
    .ok_or_else(|| malformed("scrypt parameters rejected"))?;
    XSalsa20Poly1305::new((&box_key).into())
        .decrypt((&nonce).into(), sealed.as_slice())
        .map_err(|_| SignError::WrongPassword {
            path: path.to_path_buf(),
        })
}

impl PublicKey {
    /// Reads a PEM "PUBLIC KEY" file (cosign.pub).
    pub fn read(path: &Path) -> Result<PublicKey> {
        let text = std::fs::read_to_string(path).map_err(|source| SignError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        PublicKey::from_pem(path, &text)
    }

    /// Parses PEM text; `path` is only for messages.
    pub fn from_pem(path: &Path, text: &str) -> Result<PublicKey> {
        use p256::pkcs8::DecodePublicKey;
        let trimmed = text.trim();
        if trimmed.contains("PRIVATE KEY-----") {
            return Err(key_err(
                path,
                "this is a private key",
                "verify with the public key (cosign.pub); never hand out the private key",
            ));
        }
        let key = VerifyingKey::from_public_key_pem(trimmed).map_err(|_| {
            key_err(
                path,
                "not a PEM ECDSA P-256 public key",
                "give cosign.pub from `kiln generate-key-pair` or `cosign generate-key-pair`",
            )
        })?;
        Ok(PublicKey { key })
    }

    /// The PEM text (cosign.pub).
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("P-256 public keys encode")
    }

    /// Checks an ASN.1 DER (or, as some tools write, 64-byte raw r||s) ECDSA signature of
    /// SHA-256(`data`).
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> bool {
        let digest = sha2::Sha256::digest(data);
        let sig = Signature::from_der(signature).or_else(|_| Signature::from_slice(signature));
        match sig {
            Ok(sig) => self.key.verify_prehash(&digest, &sig).is_ok(),
            Err(_) => false,
        }
    }

    /// A short stable name for the key: the hex SHA-256 of its DER SubjectPublicKeyInfo,
    /// which is also the bundle's `publicKey.hint`.
    pub fn key_id(&self) -> String {
        let der = self.key.to_public_key_der().expect("P-256 public keys encode");
        hex::encode(sha2::Sha256::digest(der.as_bytes()))
    }
}

/// Writes `cosign.key` (mode 0600) and `cosign.pub` with the given prefix, refusing to
/// overwrite existing files.
pub fn write_key_pair(prefix: &Path, password: &[u8]) -> Result<(PathBuf, PathBuf)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key_path = PathBuf::from(format!("{}.key", prefix.display()));
    let pub_path = PathBuf::from(format!("{}.pub", prefix.display()));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(key_err(
                p,
                "already exists",
                "move it away or choose another --output-key-prefix; kiln never overwrites keys",
            ));
        }
    }
    let key = PrivateKey::generate();
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| SignError::Io { path: p, source }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(io(&key_path))?;
    f.write_all(key.to_cosign_pem(password).as_bytes())
        .map_err(io(&key_path))?;
    std::fs::write(&pub_path, key.public().to_pem()).map_err(io(&pub_path))?;
    Ok((key_path, pub_path))
}

/// The password for a cosign key: `COSIGN_PASSWORD` if set (even empty), else a prompt on
/// the terminal without echo (twice when `confirm`). Without either, an error says how to
/// give one.
pub fn password(confirm: bool) -> Result<Vec<u8>> {
    if let Some(p) = std::env::var_os("COSIGN_PASSWORD") {
        use std::os::unix::ffi::OsStrExt;
        return Ok(p.as_bytes().to_vec());
    }
    let no_tty = || SignError::Key {
        path: PathBuf::from("COSIGN_PASSWORD"),
        reason: "not set, and there is no terminal to ask for the password".into(),
        hint: "set COSIGN_PASSWORD (it may be empty) in the environment".into(),
    };
    let first = prompt("Enter password for private key: ").ok_or_else(no_tty)?;
    if confirm {
        let again = prompt("Enter password for private key again: ").ok_or_else(no_tty)?;
        if again != first {
            return Err(SignError::Key {
                path: PathBuf::from("password"),
                reason: "the two passwords differ".into(),
                hint: "type the same password twice".into(),
            });
        }
    }
    Ok(first)
}

/// Reads one line from /dev/tty with echo off; None without a terminal.
fn prompt(message: &str) -> Option<Vec<u8>> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::{BufRead, Write};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let saved = tcgetattr(&tty).ok()?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&tty, OptionalActions::Flush, &quiet).ok()?;
    let mut out = &tty;
    let _ = out.write_all(message.as_bytes());
    let mut line = Vec::new();
    let read = std::io::BufReader::new(&tty).read_until(b'\n', &mut line);
    let _ = tcsetattr(&tty, OptionalActions::Flush, &saved);
    let _ = out.write_all(b"\n");
    read.ok()?;
    while line.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        line.pop();
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PC_KEY: &str = include_str!("../testdata/policy-controller/cosign.key");
    const PC_PUB: &str = include_str!("../testdata/policy-controller/cosign.pub");

    #[test]
    fn round_trip_with_password() {
        let k = PrivateKey::generate();
        let pem = k.to_cosign_pem(b"hunter2");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
        assert!(!pem.contains("hunter2"));
        let back = PrivateKey::from_pem(Path::new("k"), &pem, &mut || Ok(b"hunter2".to_vec())).unwrap();
        assert_eq!(back.public(), k.public());
        let e = PrivateKey::from_pem(Path::new("k"), &pem, &mut || Ok(b"wrong".to_vec())).unwrap_err();
        assert!(matches!(e, SignError::WrongPassword { .. }), "{e}");
        assert!(e.to_string().contains("wrong password"));
        let sig = k.sign(b"payload");
        assert!(k.public().verify(b"payload", &sig));
        assert!(!k.public().verify(b"payloaD", &sig));
        let pubk = PublicKey::from_pem(Path::new("p"), &k.public().to_pem()).unwrap();
        assert_eq!(pubk, k.public());
    }

    #[test]
    fn reads_policy_controller_test_keys() {
        let k = PrivateKey::from_pem(Path::new("cosign.key"), PC_KEY, &mut || Ok(Vec::new())).unwrap();
        let p = PublicKey::from_pem(Path::new("cosign.pub"), PC_PUB).unwrap();
        assert_eq!(k.public(), p);
        assert!(p.verify(b"x", &k.sign(b"x")));
        let e = PrivateKey::from_pem(Path::new("cosign.key"), PC_KEY, &mut || Ok(b"nope".to_vec())).unwrap_err();
        assert!(matches!(e, SignError::WrongPassword { .. }));
    }

    #[test]
    fn plain_pem_keys() {
        let k = PrivateKey::generate();
        let pkcs8 = k.key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let back = PrivateKey::from_pem(Path::new("k"), &pkcs8, &mut || panic!("no password for plain keys")).unwrap();
        assert_eq!(back.public(), k.public());
        let sec1 = p256::SecretKey::from(&k.key).to_sec1_pem(LineEnding::LF).unwrap();
        let back = PrivateKey::from_pem(Path::new("k"), &sec1, &mut || panic!()).unwrap();
        assert_eq!(back.public(), k.public());
        assert!(PrivateKey::from_pem(Path::new("k"), "garbage", &mut || panic!()).is_err());
        assert!(PrivateKey::from_pem(Path::new("k"), &k.public().to_pem(), &mut || panic!()).is_err());
        assert!(PublicKey::from_pem(Path::new("k"), &pkcs8).is_err());
    }
}
