//! Feeds arbitrary bytes to the InRelease path: cleartext-signature parsing and verification
//! against Debian's keyring (the seed is a real Debian InRelease, so mutations probe the
//! verifier around a valid signature), keyring parsing, deb822 parsing, and the Packages
//! index reader. Checks: no panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn keyring() -> &'static kiln_debian::pgp::Keyring {
    static K: OnceLock<kiln_debian::pgp::Keyring> = OnceLock::new();
    K.get_or_init(|| {
        let data = std::fs::read("/usr/share/keyrings/debian-archive-keyring.gpg").unwrap_or_default();
        kiln_debian::pgp::Keyring::parse(&data).unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = kiln_debian::pgp::verify_cleartext(data, keyring());
    let _ = kiln_debian::pgp::Keyring::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kiln_debian::control::parse(text);
        let _ = kiln_debian::control::parse_relation(text);
        let _ = kiln_debian::repo::parse_packages(text);
    }
});
