//! Feeds arbitrary bytes to kiln's own parsing on the InRelease path: the shape check of a
//! cleartext-signed message (the signature itself is checked by gpgv, a separate program, in
//! `kiln_debian::pgp::verify_cleartext`), deb822 parsing, the Packages index reader (whole
//! and streamed) and the keyring reader behind the minimum key size. The seed is a real
//! Debian InRelease, so mutations probe the parsers around valid input.
//! Checks: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kiln_debian::pgp::check_shape(data);
    let _ = kiln_debian::pgp::keyring::keys(data);
    let _ = kiln_debian::repo::parse_packages_from(data, 1 << 20);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kiln_debian::control::parse(text);
        let _ = kiln_debian::control::parse_relation(text);
        let _ = kiln_debian::repo::parse_packages(text);
    }
});
