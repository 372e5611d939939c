//! The build as a library (issue 11, point 4): `kiln_build::pipeline::build`, called directly
//! as `kiln serve` and tests do, makes what `kiln build` makes: the same image digest, tagged,
//! with its SBOMs and provenance attached, and the plan it built from.

use kiln_build::build::DockerfileRequest;
use kiln_build::pipeline::{self, BuildRequest, PipelineError, Source};
use kiln_oci::Store;
use kiln_oci::layer::Compression;
use kiln_tests::{KilnStore, run_ok, sha256_hex};

fn request(ctx: &std::path::Path, tags: &[&str]) -> BuildRequest {
    BuildRequest {
        source: Source::Dockerfile(Box::new(DockerfileRequest {
            context: ctx.to_path_buf(),
            dockerfile: None,
            build_args: vec![],
            target: None,
            platform: None,
            no_cache: false,
            compression: Compression::DEFAULT,
            source_date_epoch: None,
            run: Default::default(),
            labels: vec![],
        })),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        registry: kiln_registry::Options::default(),
        pull: Default::default(),
        locked: false,
        write_lock: false,
        sbom: true,
        sbom_stages: false,
        sign_key: None,
        tag_digest: false,
        outputs: vec![],
        push: false,
        gate: None,
        cache: Default::default(),
        hermetic: false,
    }
}

#[test]
fn the_library_build_is_the_cli_build() {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("f"), "from the library\n").unwrap();
    let dockerfile = "FROM scratch AS a\nCOPY f /f\nFROM scratch\nCOPY --from=a /f /g\nCMD [\"/g\"]\n";
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();

    let cli_store = KilnStore::new();
    let out = run_ok(cli_store.cmd(["build", "-q", "-t", "app:1"]).arg(ctx.path()));
    let cli_digest = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = pipeline::build(&store, &request(ctx.path(), &["app:1"]), &kiln_build::solver::Quiet).unwrap();
    assert_eq!(r.image.digest.to_string(), cli_digest);
    assert_eq!(store.resolve("app:1").unwrap().unwrap().digest, r.image.digest);
    assert_eq!((r.cache_hits, r.cache_misses), (0, 2));
    assert!(r.sbom_packages.is_some());
    assert_eq!(
        r.plan.inputs.source.digest.to_string(),
        format!("sha256:{}", sha256_hex(dockerfile.as_bytes()))
    );
    for artifact_type in [
        "application/spdx+json",
        "application/vnd.cyclonedx+json",
        "application/vnd.in-toto+json",
    ] {
        assert_eq!(
            store.referrers(&r.image.digest, Some(artifact_type)).unwrap().len(),
            1,
            "{artifact_type}"
        );
    }
    // Again: everything from the cache, nothing attached twice.
    let again = pipeline::build(&store, &request(ctx.path(), &["app:1"]), &kiln_build::solver::Quiet).unwrap();
    assert_eq!(
        (again.image.digest, again.cache_hits, again.cache_misses),
        (r.image.digest.clone(), 2, 0)
    );
    assert_eq!(again.sbom_packages, None);
    assert_eq!(store.referrers(&r.image.digest, None).unwrap().len(), 3);

    // A bad request is refused before any work, with the CLI's exit code.
    let mut bad = request(ctx.path(), &["plain/app:1"]);
    bad.push = true;
    let e = pipeline::build(&store, &bad, &kiln_build::solver::Quiet).unwrap_err();
    assert!(matches!(e, PipelineError::Input { .. }) && e.exit_code() == 2, "{e}");
}
