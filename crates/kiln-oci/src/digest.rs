//! Content digests (`algorithm:hex`) and streaming hashers.
//!
//! Everything kiln stores or fetches is named by its digest, so parsing is strict: only
//! sha256 and sha512 are accepted, the hex must be lowercase and of the right length.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// The hash functions the OCI image spec registers; anything else is refused rather than
/// guessed at, because a digest we cannot recompute cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the default for everything kiln writes.
    Sha256,
    /// SHA-512, accepted on read because the OCI spec registers it.
    Sha512,
}

impl Algorithm {
    /// Name as it appears before the colon in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a string is not a digest kiln can use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("invalid digest {0:?}: expected ALGORITHM:HEX (hint: digests look like sha256:<64 hex chars>)")]
    Malformed(String),
    /// An algorithm other than sha256 or sha512.
    #[error("unsupported digest algorithm {0:?} (hint: kiln supports sha256 and sha512)")]
    UnsupportedAlgorithm(String),
    /// Wrong length or non-lowercase-hex characters.
    #[error("invalid digest {0:?}: the hex part must be lowercase and {1} characters long")]
    BadHex(String, usize),
}

/// A verified-shape content digest such as `sha256:e3b0…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Builds a digest from raw hash bytes.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        Digest {
            algorithm,
            hex: hex::encode(bytes),
        }
    }

    /// The sha256 of an in-memory byte string (small things only: manifests, configs).
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::from_bytes(Algorithm::Sha256, &Sha256::digest(data))
    }

    /// The hash function.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part, which is also the blob's file name in an OCI layout.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s.split_once(':').ok_or_else(|| DigestError::Malformed(s.to_string()))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            "" => return Err(DigestError::Malformed(s.to_string())),
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_string())),
        };
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::BadHex(s.to_string(), algorithm.hex_len()));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for either algorithm, so verification of foreign data can follow
/// whatever algorithm its digest names.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Finishes and returns the digest.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::from_bytes(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_bytes(Algorithm::Sha512, &h.finalize()),
        }
    }
}

/// A writer adapter that hashes and counts everything passing through it, so a layer can be
/// hashed at each stage of the one streaming pass (tar, then compressed).
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`, hashing with sha256.
    pub fn new(inner: W) -> Self {
        Self::with_algorithm(inner, Algorithm::Sha256)
    }

    /// Wraps `inner`, hashing with `algorithm` (foreign content may name sha512).
    pub fn with_algorithm(inner: W, algorithm: Algorithm) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(algorithm),
            written: 0,
        }
    }

    /// Continues a stream whose first bytes are already in `inner`'s destination: hashes
    /// and counts everything `already` yields (without writing it), so the digest at
    /// [`HashingWriter::finish`] covers the whole stream. A resumed download uses it.
    pub fn continuing(inner: W, algorithm: Algorithm, mut already: impl Read) -> io::Result<Self> {
        let mut w = Self::with_algorithm(inner, algorithm);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = already.read(&mut buf)?;
            if n == 0 {
                return Ok(w);
            }
            w.hasher.update(&buf[..n]);
            w.written += n as u64;
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The inner writer, for callers that need to flush or inspect it mid-stream.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader adapter that hashes and counts what is read, and, when given the expected digest
/// and size, fails the read that reaches the end if they do not match. Readers of foreign
/// data use it so that unverified bytes are never treated as final.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Option<(Digest, Option<u64>)>,
    read: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// Hashes with the expected digest's algorithm and checks digest and size at EOF.
    pub fn new(inner: R, expected: Digest, size: Option<u64>) -> Self {
        VerifyingReader {
            inner,
            hasher: Some(Hasher::new(expected.algorithm())),
            expected: Some((expected, size)),
            read: 0,
        }
    }

    /// Hashes with sha256 without checking anything; `digest()` tells the result.
    pub fn unchecked(inner: R) -> Self {
        Self::hashing(inner, Algorithm::Sha256)
    }

    /// Hashes with `algorithm` without checking anything: for a caller that compares the
    /// digest itself (after [`VerifyingReader::drain`]) and wants to say more than
    /// "mismatch", e.g. which layer of which image lied about its diff_id.
    pub fn hashing(inner: R, algorithm: Algorithm) -> Self {
        VerifyingReader {
            inner,
            hasher: Some(Hasher::new(algorithm)),
            expected: None,
            read: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Reads to the end (so the check runs) and returns the digest of everything read.
    pub fn drain(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let d = match (&self.expected, self.hasher.take()) {
            (Some((d, _)), None) => d.clone(),
            (_, Some(h)) => h.finish(),
            (None, None) => unreachable!("hasher consumed without expectation"),
        };
        Ok((d, self.read))
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.read += n as u64;
        if let Some((_, Some(size))) = &self.expected
            && self.read > *size
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("content is larger than the expected {size} bytes"),
            ));
        }
        if n == 0
            && !buf.is_empty()
            && let Some((want, size)) = &self.expected
            && let Some(h) = self.hasher.take()
        {
            {
                let got = h.finish();
                if let Some(size) = size
                    && self.read != *size
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("size mismatch for {want}: expected {size} bytes, got {}", self.read),
                    ));
                }
                if &got != want {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("digest mismatch: expected {want}, got {got}"),
                    ));
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::sha256_of(b""), d);
    }

    #[test]
    fn rejects_bad_digests() {
        assert!(matches!(
            "md5:abc".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!("sha256".parse::<Digest>(), Err(DigestError::Malformed(_))));
        assert!(matches!("sha256:ABC".parse::<Digest>(), Err(DigestError::BadHex(..))));
        assert!(
            EMPTY
                .to_uppercase()
                .replace("SHA256", "sha256")
                .parse::<Digest>()
                .is_err()
        );
        let sha512 = format!("sha512:{}", "a".repeat(128));
        assert_eq!(sha512.parse::<Digest>().unwrap().algorithm(), Algorithm::Sha512);
        assert!(format!("sha512:{}", "a".repeat(64)).parse::<Digest>().is_err());
    }

    #[test]
    fn verifying_reader_detects_mismatch() {
        let good = VerifyingReader::new(&b""[..], EMPTY.parse().unwrap(), Some(0));
        assert!(good.drain().is_ok());
        let bad = VerifyingReader::new(&b"x"[..], EMPTY.parse().unwrap(), None);
        assert!(bad.drain().unwrap_err().to_string().contains("digest mismatch"));
        let big = VerifyingReader::new(&b"xy"[..], EMPTY.parse().unwrap(), Some(1));
        assert!(big.drain().is_err());
    }

    #[test]
    fn sha512_verifies() {
        use sha2::Digest as _;
        let want = Digest::from_bytes(Algorithm::Sha512, &Sha512::digest(b"abc"));
        assert!(VerifyingReader::new(&b"abc"[..], want, Some(3)).drain().is_ok());
    }
}
