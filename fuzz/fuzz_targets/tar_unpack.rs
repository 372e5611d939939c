//! Unpacks arbitrary bytes as a layer (optionally gzip/zstd, sniffed) into a fresh root with a
//! sibling canary directory. Checks: no panic, and nothing is ever created outside the root,
//! whatever `..`, absolute paths, symlinks or hardlinks the archive holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let canary = dir.path().join("canary");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&canary).unwrap();
    let reader = match kiln_oci::decompress::open_layer_stream(std::io::Cursor::new(data.to_vec())) {
        Ok(r) => r,
        Err(_) => return,
    };
    let opts = kiln_oci::unpack::UnpackOptions { same_owner: false, allow_devices: false, ..Default::default() };
    let _ = kiln_oci::unpack::unpack_layer(reader, &root, &opts);
    let outside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(outside.len(), 2, "entries appeared beside the root: {outside:?}");
    assert_eq!(std::fs::read_dir(&canary).unwrap().count(), 0, "the canary directory was written");
});
