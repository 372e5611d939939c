//! Image names as a person types them: besides the transports and names
//! [`ImageRef::parse`] knows, a short digest (`sha256:a81f69d529dd`, or `a81f69d529dd` as
//! `kiln images` prints it) names the one image in the store whose digest starts with it,
//! as docker accepts image ID prefixes. Also the cosign tags kept beside images.

use kiln_oci::Store;
use kiln_oci::reference::ImageRef;

use crate::error::CliError;

/// The fewest hex digits a bare prefix (without `sha256:`) must have to be taken as one;
/// shorter words are names (`kiln inspect cafe` means `cafe:latest`).
const MIN_BARE_PREFIX: usize = 6;

/// Parses an image argument: a transport or name, or an unambiguous digest prefix of an
/// image in the store. A bare hex word that is also a name in the store is that name.
pub fn parse_image(store: &Store, input: &str) -> Result<ImageRef, CliError> {
    let (prefix, explicit) = match input.strip_prefix("sha256:") {
        Some(hex) if hex.len() < 64 => (hex, true),
        _ if is_hex(input) && (MIN_BARE_PREFIX..=64).contains(&input.len()) => (input, false),
        _ => return Ok(ImageRef::parse(input)?),
    };
    if !is_hex(prefix) || prefix.is_empty() {
        return Ok(ImageRef::parse(input)?);
    }
    if !explicit
        && let Ok(ImageRef::Store(n)) = ImageRef::parse(input)
        && store.resolve(&n.store_key())?.is_some()
    {
        return Ok(ImageRef::Store(n));
    }
    let mut found: Vec<kiln_oci::Digest> = store
        .index()?
        .manifests
        .into_iter()
        .map(|m| m.digest)
        .filter(|d| d.algorithm().as_str() == "sha256" && d.hex().starts_with(prefix))
        .collect();
    found.sort();
    found.dedup();
    match found.len() {
        1 => Ok(ImageRef::StoreDigest(found.remove(0))),
        0 if explicit => Err(CliError::input(format!(
            "no image in the store has a digest starting with sha256:{prefix} (hint: `kiln images` lists them)"
        ))),
        0 => Ok(ImageRef::parse(input)?),
        n => Err(CliError::input(format!(
            "{input} is ambiguous: {n} images in the store have digests starting with it ({}) (hint: give more digits)",
            found.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// If `tag` is one of cosign's tags for a signed image (`sha256-<hex>.sig`, `.att`,
/// `.sbom`) or the referrers tag-schema index (`sha256-<hex>`), the hex digest of the image
/// it belongs to.
pub fn cosign_subject(tag: &str) -> Option<&str> {
    let rest = tag.strip_prefix("sha256-")?;
    let hex = [".sig", ".att", ".sbom"]
        .iter()
        .find_map(|s| rest.strip_suffix(s))
        .unwrap_or(rest);
    (hex.len() == 64 && is_hex(hex)).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags() {
        let hex = "ab".repeat(32);
        assert_eq!(cosign_subject(&format!("sha256-{hex}.sig")), Some(hex.as_str()));
        assert_eq!(cosign_subject(&format!("sha256-{hex}.att")), Some(hex.as_str()));
        assert_eq!(cosign_subject(&format!("sha256-{hex}")), Some(hex.as_str()));
        assert_eq!(cosign_subject("sha256-abc.sig"), None);
        assert_eq!(cosign_subject("latest"), None);
        assert_eq!(cosign_subject(&format!("sha256-{hex}.txt")), None);
    }
}
