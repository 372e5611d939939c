//! Reads arbitrary bytes as a .deb (ar, control.tar, data.tar in gz/xz/zst). Checks: no
//! panic, and every entry path it returns is relative and free of `..`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(deb) = kiln_debian::deb::read("fuzz.deb", data) {
        for e in &deb.entries {
            assert!(!e.path.starts_with('/'), "absolute path {:?}", e.path);
            assert!(!e.path.split('/').any(|c| c == ".."), "`..` in {:?}", e.path);
        }
    }
});
