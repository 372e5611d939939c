//! Shannon entropy of a byte string, the one measure of "looks random" kiln uses: the gzip
//! writer stores blocks that would not shrink, and the secret scanner asks whether a value
//! assigned to a secret-looking name is random enough to be a credential.

/// Shannon entropy in bits per byte (0 for empty or constant data, 8 for uniform bytes).
pub fn bits_per_byte(data: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64 / n)
        .map(|p| -p * p.log2())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(bits_per_byte(b""), 0.0);
        assert_eq!(bits_per_byte(b"aaaa"), 0.0);
        assert_eq!(bits_per_byte(b"abab"), 1.0);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(bits_per_byte(&all), 8.0);
    }
}
