//! The policy engine as a library, the way `kiln serve` calls it (issue 13):
//! `kiln_policy::check` with an in-memory decision cache against an image kiln built,
//! signed and pushed to Debian's docker-registry on loopback. A pinned reference is
//! answered from the cache; a tag is resolved again; an unreachable registry is a denial,
//! not an error; the pod section is exposed.

use kiln_oci::Store;
use kiln_policy::cache::DecisionCache;
use kiln_policy::{Policy, Sources, check};
use kiln_registry::RegistryAccess;
use kiln_tests::registry::TestRegistry;
use kiln_tests::{KilnStore, free_port, last_line, run_ok};

#[test]
fn check_with_a_cache_as_serve_does() {
    let reg = TestRegistry::start();
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let kiln = |args: &[&str]| {
        let mut c = store.cmd(args);
        c.env("COSIGN_PASSWORD", "").env("DOCKER_CONFIG", dir.path());
        c
    };
    run_ok(kiln(&["generate-key-pair", "--output-key-prefix"]).arg(dir.path().join("rel")));
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY Dockerfile /d\nUSER 1000\n").unwrap();
    let name = format!("127.0.0.1:{}/prod/app:1", reg.port());
    let key = dir.path().join("rel.key").display().to_string();
    let digest = last_line(&run_ok(
        kiln(&["build", "-q", "--sign", "--key", &key, "-t", &name]).arg(&ctx),
    ));
    run_ok(&mut kiln(&["push", "-q", &name]));
    std::fs::write(
        dir.path().join("p.yaml"),
        "version: 1\nauthorities:\n  rel: { key: rel.pub }\nrules:\n  - name: prod\n    images: [\"127.0.0.1:*/prod/**\"]\n    signatures: { by: [rel] }\n    config: { non_root: true }\n    pod: { profile: restricted, read_only_root: true }\n",
    )
    .unwrap();
    let policy = Policy::load(&dir.path().join("p.yaml")).unwrap();
    let pod = policy.file.rules[0].pod.as_ref().expect("the pod section");
    assert_eq!(pod.profile.as_deref(), Some("restricted"));
    assert_eq!(pod.read_only_root, Some(true));

    let st = Store::open(store.path()).unwrap();
    let access = RegistryAccess::new(kiln_registry::Options::default());
    let meta = store.path().join("kiln");
    let src = Sources {
        store: &st,
        registries: Some(&access),
        meta: &meta,
    };
    let cache = DecisionCache::in_memory();
    let pinned = format!("127.0.0.1:{}/prod/app@{digest}", reg.port());
    let d = check(&policy, &src, &pinned, Some(&cache), 1_000).unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.digest, digest);
    // The registry goes away: the pinned reference is answered from the cache, a
    // reference that must be resolved is denied with the reason, and nothing is an error.
    drop(reg);
    let again = check(&policy, &src, &pinned, Some(&cache), 1_001).unwrap();
    assert_eq!(again, d);
    let d = check(&policy, &src, &name, Some(&cache), 1_002).unwrap();
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.violations[0].rule, "(unreadable)");
    let elsewhere = format!("127.0.0.1:{}/prod/app@{digest}", free_port());
    let d = check(&policy, &src, &elsewhere, None, 1_003).unwrap();
    assert!(!d.allowed && d.violations[0].message.contains("127.0.0.1"), "{d:?}");
}
