//! The size of each key in an OpenPGP keyring, for kiln's minimum key size (issue 12.6):
//! gpgv reports the fingerprint of the key that made a good signature (`VALIDSIG`) but not
//! its size, so kiln reads that from the keyring's public-key packets. Only what that needs
//! is parsed: packet framing (RFC 4880 §4.2), the fixed fields of version 4, 5 and 6 key
//! packets, their fingerprints, and the bit length of the first MPI of an RSA, DSA or
//! Elgamal key (the modulus or the prime). Signatures are never checked here; gpgv does that.

use sha1::Digest as _;

/// One primary key or subkey of a keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Fingerprint, upper-case hex, as gpgv prints it.
    pub fingerprint: String,
    /// OpenPGP public-key algorithm number (1-3 RSA, 16/20 Elgamal, 17 DSA, 18+ curves).
    pub algorithm: u8,
    /// Bits of the modulus (RSA) or prime (DSA, Elgamal), counted from the value itself;
    /// `None` for elliptic-curve keys, whose size is the curve's.
    pub bits: Option<u32>,
}

/// Reads every public key and subkey packet of a binary keyring (packets as `gpg --export`
/// writes them). Other packets are skipped; an error names the first thing that is not an
/// OpenPGP packet.
pub fn keys(mut data: &[u8]) -> Result<Vec<KeyInfo>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (tag, body, rest) = packet(data)?;
        // 6: public key, 14: public subkey.
        if (tag == 6 || tag == 14)
            && let Some(key) = key_packet(body)?
        {
            out.push(key);
        }
        data = rest;
    }
    Ok(out)
}

/// Splits the first packet off: (tag, body, the rest).
fn packet(data: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let short = || "a packet is cut short".to_string();
    let head = data[0];
    if head & 0x80 == 0 {
        return Err(format!(
            "byte 0x{head:02x} does not start an OpenPGP packet (a GnuPG keybox, or not a keyring)"
        ));
    }
    let be = |b: &[u8]| b.iter().fold(0usize, |a, x| (a << 8) | *x as usize);
    let (tag, header, len) = if head & 0x40 == 0 {
        // Old format: tag in bits 5-2, length type in bits 1-0.
        let n = match head & 3 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => return Err("a packet of indeterminate length in a keyring".into()),
        };
        let len = be(data.get(1..1 + n).ok_or_else(short)?);
        ((head >> 2) & 0xf, 1 + n, len)
    } else {
        let first = *data.get(1).ok_or_else(short)? as usize;
        match first {
            0..=191 => (head & 0x3f, 2, first),
            192..=223 => {
                let second = *data.get(2).ok_or_else(short)? as usize;
                (head & 0x3f, 3, ((first - 192) << 8) + second + 192)
            }
            255 => (head & 0x3f, 6, be(data.get(2..6).ok_or_else(short)?)),
            _ => return Err("a partial-length packet in a keyring".into()),
        }
    };
    let end = header.checked_add(len).filter(|e| *e <= data.len()).ok_or_else(short)?;
    Ok((tag, &data[header..end], &data[end..]))
}

/// A public-key packet's fingerprint, algorithm and size; `None` for versions 2 and 3,
/// which gpgv no longer uses.
fn key_packet(body: &[u8]) -> Result<Option<KeyInfo>, String> {
    let short = || "a key packet is cut short".to_string();
    let version = *body.first().ok_or_else(short)?;
    let (fingerprint, material_at) = match version {
        2 | 3 => return Ok(None),
        4 => {
            let mut h = sha1::Sha1::new();
            h.update([0x99]);
            h.update((body.len() as u16).to_be_bytes());
            h.update(body);
            (hex::encode_upper(h.finalize()), 6)
        }
        5 | 6 => {
            let mut h = sha2::Sha256::new();
            h.update([if version == 5 { 0x9a } else { 0x9b }]);
            h.update((body.len() as u32).to_be_bytes());
            h.update(body);
            (hex::encode_upper(h.finalize()), 10)
        }
        v => return Err(format!("a key packet of unknown version {v}")),
    };
    let algorithm = *body.get(5).ok_or_else(short)?;
    let material = body.get(material_at..).ok_or_else(short)?;
    let bits = match algorithm {
        1 | 2 | 3 | 16 | 17 | 20 => Some(first_mpi_bits(material).ok_or_else(short)?),
        _ => None,
    };
    Ok(Some(KeyInfo {
        fingerprint,
        algorithm,
        bits,
    }))
}

/// The bit length of the value of the MPI at the start of `data` (leading zero bits are not
/// counted, whatever its two-octet length prefix claims).
fn first_mpi_bits(data: &[u8]) -> Option<u32> {
    let declared = u16::from_be_bytes([*data.first()?, *data.get(1)?]) as usize;
    let value = data.get(2..2 + declared.div_ceil(8))?;
    let value = &value[value.iter().take_while(|b| **b == 0).count()..];
    let top = value.first()?;
    Some(value.len() as u32 * 8 - top.leading_zeros())
}

/// The name of a public-key algorithm, for messages.
pub fn algorithm_name(algorithm: u8) -> &'static str {
    match algorithm {
        1..=3 => "RSA",
        16 | 20 => "Elgamal",
        17 => "DSA",
        _ => "elliptic-curve",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 4 RSA key packet (new format header) with a modulus of `n` bytes.
    fn rsa_v4(n: &[u8]) -> Vec<u8> {
        let mut body = vec![4, 0x60, 0, 0, 0, 1];
        let bits = (n.len() * 8) as u16;
        body.extend(bits.to_be_bytes());
        body.extend(n);
        body.extend([0, 17, 1, 0, 1]);
        let mut p = vec![0xc0 | 6];
        assert!(body.len() < 192);
        p.push(body.len() as u8);
        p.extend(body);
        p
    }

    #[test]
    fn sizes_and_framing() {
        let mut n = vec![0xff; 64];
        let strong = rsa_v4(&n);
        // The prefix claims 512 bits; the value has 505.
        n[0] = 0x01;
        let claimed = rsa_v4(&n);
        // A user ID packet (tag 13) between them, old format, is skipped.
        let mut ring = strong.clone();
        ring.extend([0x80 | (13 << 2), 3, b'a', b'b', b'c']);
        ring.extend(&claimed);
        let keys = keys(&ring).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].bits, Some(512));
        assert_eq!(keys[1].bits, Some(505));
        assert_eq!((keys[0].algorithm, keys[0].fingerprint.len()), (1, 40));
        assert_ne!(keys[0].fingerprint, keys[1].fingerprint);
        // Cut short, keybox, partial length: errors, never a panic.
        assert!(
            super::keys(&strong[..strong.len() - 1])
                .unwrap_err()
                .contains("cut short")
        );
        assert!(super::keys(b"\0\0\0\x20\x01\x01").unwrap_err().contains("keybox"));
        assert!(super::keys(&[0xc6, 0xe0, 0]).unwrap_err().contains("partial"));
        // An Ed25519 key (algorithm 27) has no bit count here.
        let ed = [0xc6, 6, 4, 0, 0, 0, 0, 27];
        assert_eq!(super::keys(&ed).unwrap()[0].bits, None);
    }
}
