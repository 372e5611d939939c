//! Multi-platform Dockerfile builds (issue 16): `--platform linux/amd64,linux/arm64` writes
//! one index whose images skopeo inspects; `TARGET*`/`BUILD*` args as BuildKit sets them and
//! `FROM --platform=$BUILDPLATFORM` for a cross-compiling stage; each platform's image is the
//! one a one-platform build gives. A foreign-architecture RUN without a binfmt_misc handler
//! fails with the package and the registration it needs.

use std::path::Path;
use std::process::Command;

use kiln_tests::{KilnStore, busybox_store, require_tool, run_ok, write_context};
use serde_json::Value;

const EPOCH: &str = "1700000000";

fn build(store: &KilnStore, args: &[&str], ctx: &Path) -> String {
    let out = run_ok(
        store
            .cmd(["build", "-q"])
            .args(args)
            .arg(ctx)
            .env("SOURCE_DATE_EPOCH", EPOCH),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn blob(store: &KilnStore, digest: &str) -> Value {
    let p = store
        .path()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn skopeo_inspect(store: &KilnStore, tag: &str, arch: &str) -> Value {
    let out = run_ok(Command::new(require_tool("skopeo")).args([
        "inspect",
        "--override-os",
        "linux",
        "--override-arch",
        arch,
        &format!("oci:{}:{tag}", store.path().display()),
    ]));
    serde_json::from_slice(&out.stdout).unwrap()
}

const CROSS: &str = "FROM --platform=$BUILDPLATFORM localhost/busybox:test AS build
ARG TARGETPLATFORM
ARG TARGETOS
ARG TARGETARCH
ARG TARGETVARIANT
ARG BUILDPLATFORM
ARG BUILDOS
ARG BUILDARCH
RUN echo \"$BUILDPLATFORM $BUILDOS $BUILDARCH -> $TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT]\" > /out
FROM scratch
COPY --from=build /out /platform
";

#[test]
fn two_platforms_make_one_index_with_reproducible_images() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(&ctx, CROSS);
    let digest = build(
        &store,
        &["--platform", "linux/amd64,linux/arm64", "-t", "app:multi"],
        &ctx,
    );

    let index = blob(&store, &digest);
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let ms = index["manifests"].as_array().unwrap();
    let plats: Vec<String> = ms
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(plats, ["linux/amd64", "linux/arm64"]);
    assert_ne!(ms[0]["digest"], ms[1]["digest"]);

    for (arch, m) in [("amd64", &ms[0]), ("arm64", &ms[1])] {
        let inspected = skopeo_inspect(&store, "app:multi", arch);
        assert_eq!(inspected["Architecture"], arch);
        assert_eq!(inspected["Os"], "linux");
        // skopeo 1.9 reports the index's digest, and the chosen manifest's layers.
        assert_eq!(inspected["Digest"], digest.as_str());
        let manifest = blob(&store, m["digest"].as_str().unwrap());
        let layers: Vec<&Value> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["digest"])
            .collect();
        assert_eq!(
            inspected["Layers"].as_array().unwrap().iter().collect::<Vec<_>>(),
            layers
        );
        let config = blob(&store, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"], arch);
    }
    // The build stage ran on the build platform for each target, with BuildKit's args.
    assert_eq!(
        kiln_tests::platform_file(&store, "app:multi", "arm64", "/platform"),
        "linux/amd64 linux amd64 -> linux/arm64 linux arm64 []\n"
    );
    assert_eq!(
        kiln_tests::platform_file(&store, "app:multi", "amd64", "/platform"),
        "linux/amd64 linux amd64 -> linux/amd64 linux amd64 []\n"
    );

    // Each platform's image is what a one-platform build makes, from scratch again.
    let arm = build(&store, &["--no-cache", "--platform", "linux/arm64"], &ctx);
    assert_eq!(arm, ms[1]["digest"].as_str().unwrap());
    let again = build(&store, &["--no-cache", "--platform", "linux/amd64,linux/arm64"], &ctx);
    assert_eq!(again, digest);
}

/// A `$BUILDPLATFORM` stage's steps that use no target arg: the first RUN sees no
/// `TARGET*` arg, so its key is the same for both targets; the second declares
/// `TARGETARCH`. Each RUN prints a line its command text does not contain (the shell does
/// the arithmetic), so the plain progress shows how many times each ran.
const SHARED: &str = "FROM --platform=$BUILDPLATFORM localhost/busybox:test AS build
RUN echo shared-$((1+1)) | tee /shared
ARG TARGETARCH
RUN echo arch-$TARGETARCH-$((2+1)) | tee /arch
FROM scratch
COPY --from=build /shared /arch /
";

#[test]
fn a_buildplatform_stage_runs_once_for_two_targets_and_a_targetarch_step_per_target() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(&ctx, SHARED);
    let out = run_ok(
        store
            .cmd([
                "build",
                "--progress=plain",
                "--platform",
                "linux/amd64,linux/arm64",
                "-t",
                "app:shared",
            ])
            .arg(&ctx)
            .env("SOURCE_DATE_EPOCH", EPOCH),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let ran = |line: &str| log.lines().filter(|l| l.ends_with(line)).count();
    // The two platforms are solved side by side: the shared step ran once, and the other
    // platform waited for it and took its record.
    assert_eq!(ran(" shared-2"), 1, "{log}");
    assert_eq!(ran(" arch-amd64-3"), 1, "{log}");
    assert_eq!(ran(" arch-arm64-3"), 1, "{log}");
    for arch in ["amd64", "arm64"] {
        assert_eq!(
            kiln_tests::platform_file(&store, "app:shared", arch, "/shared"),
            "shared-2\n"
        );
        assert_eq!(
            kiln_tests::platform_file(&store, "app:shared", arch, "/arch"),
            format!("arch-{arch}-3\n")
        );
    }
    // Sharing the step changes no image: a one-platform build from scratch gives the
    // index's arm64 image.
    let index = blob(&store, &build(&store, &["--platform", "linux/amd64,linux/arm64"], &ctx));
    let arm = build(&store, &["--no-cache", "--platform", "linux/arm64"], &ctx);
    assert_eq!(arm, index["manifests"][1]["digest"].as_str().unwrap());
}

#[test]
fn a_variant_reaches_targetvariant_and_the_index() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(&ctx, CROSS);
    let digest = build(&store, &["--platform", "linux/arm/v7,linux/amd64", "-t", "app:v"], &ctx);
    let index = blob(&store, &digest);
    assert_eq!(index["manifests"][0]["platform"]["variant"], "v7");
    let out = run_ok(Command::new(require_tool("skopeo")).args([
        "inspect",
        "--override-arch",
        "arm",
        "--override-variant",
        "v7",
        &format!("oci:{}:app:v", store.path().display()),
    ]));
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Architecture"], "arm");
    let m = blob(&store, index["manifests"][0]["digest"].as_str().unwrap());
    assert_eq!(blob(&store, m["config"]["digest"].as_str().unwrap())["variant"], "v7");
    assert_eq!(
        kiln_tests::platform_file(&store, "app:v", "arm", "/platform"),
        "linux/amd64 linux amd64 -> linux/arm/v7 linux arm [v7]\n"
    );
}

#[test]
fn bad_platform_lists_are_refused() {
    let (tmp, store) = busybox_store();
    let ctx = tmp.path().join("ctx");
    write_context(&ctx, CROSS);
    let out = store
        .cmd(["build", "--platform", "linux/amd64,linux/nope"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("linux/nope") && err.contains("hint"), "{err}");
}

/// An arm64 image of the busybox base (its busybox is the host's: the check comes first).
fn arm64_base(store: &KilnStore, scratch: &Path) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/base");
    let ctx = scratch.join("arm64-base");
    kiln_tests::copy_tree(&base, &ctx, &["setup.sh"]).unwrap();
    run_ok(
        Command::new("sh")
            .arg("-eu")
            .arg(base.join("setup.sh"))
            .current_dir(&ctx),
    );
    build(
        store,
        &["--platform", "linux/arm64", "-t", "localhost/busybox:arm64"],
        &ctx,
    );
}

#[test]
fn a_foreign_run_without_a_binfmt_handler_names_what_is_missing() {
    let store = KilnStore::new();
    let tmp = tempfile::tempdir().unwrap();
    arm64_base(&store, tmp.path());
    let ctx = tmp.path().join("ctx");
    write_context(&ctx, "FROM localhost/busybox:arm64\nRUN echo hi\n");
    // A binfmt_misc that is not there: no handler, and none can be registered.
    let out = store
        .cmd(["build", "--platform", "linux/arm64"])
        .arg(&ctx)
        .env("KILN_BINFMT_MISC", tmp.path().join("no-binfmt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("QEMU user emulation"), "{err}");
    assert!(err.contains("qemu-aarch64"), "{err}");
    assert!(err.contains("qemu-user-static"), "{err}");
    assert!(err.contains("FROM --platform=$BUILDPLATFORM"), "{err}");
}
