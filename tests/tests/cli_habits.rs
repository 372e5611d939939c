//! What a docker or skopeo user types, working as they expect (issue 17, points 6-14):
//! names from archives, short digests, `images -q`/`NAME`, `inspect --format`, archives
//! through pipes, `history`, `version`, `completion`, cosign tags in listings, read-only
//! commands on a missing store, help that lists only working flags, rootless builds
//! without `$USER`, ignore files, `--label` and `-f -`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kiln_tests::{KilnStore, kiln_bin, require_tool, rootless_user, run_ok};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A build context `dir/name` holding `dockerfile`.
fn context(dir: &Path, name: &str, dockerfile: &str) -> std::path::PathBuf {
    let ctx = dir.join(name);
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// Runs `cmd` with `input` on its standard input.
fn feed(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Builds a one-file image from scratch (with `label` as LABEL, so digests differ) and
/// returns its digest.
fn build(store: &KilnStore, dir: &Path, tag: &str, label: &str) -> String {
    let ctx = dir.join(format!("ctx-{}", label.replace(['=', ' '], "-")));
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM scratch\nCOPY Dockerfile /\nLABEL {label}\n"),
    )
    .unwrap();
    let mut c = store.cmd(["build", "-q", "--sbom=false"]);
    if !tag.is_empty() {
        c.args(["-t", tag]);
    }
    stdout(&run_ok(c.arg(&ctx)))
}

/// `kiln ARGS` in `store`; returns (exit code, stdout, stderr).
fn kiln(store: &KilnStore, args: &[&str]) -> (i32, String, String) {
    let o = store.cmd(args).stdin(Stdio::null()).output().unwrap();
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

/// Point 6: an archive whose ref.name is a bare tag (skopeo's `oci-archive:FILE:1`) loads
/// under the name docker gives it, and that name works in every command.
#[test]
fn load_names_a_bare_tag_archive_as_docker_does() {
    let skopeo = require_tool("skopeo");
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let digest = build(&store, dir.path(), "app:1", "a=1");
    let plain = dir.path().join("plain.tar");
    run_ok(store.cmd(["save", "-o"]).arg(&plain).arg("app:1"));
    let bare = dir.path().join("bare.tar");
    run_ok(
        Command::new(skopeo)
            .args(["copy", "-q"])
            .arg(format!("oci-archive:{}", plain.display()))
            .arg(format!("oci-archive:{}:1", bare.display())),
    );
    let other = KilnStore::new();
    let loaded = stdout(&run_ok(other.cmd(["load", "-i"]).arg(&bare)));
    assert_eq!(loaded, format!("Loaded image: 1:latest ({digest})"));
    let images = stdout(&run_ok(&mut other.cmd(["images"])));
    assert!(
        images.lines().any(|l| l.starts_with("1 ") && l.contains(" latest ")),
        "{images}"
    );
    for args in [
        vec!["inspect", "--format", "{{.Digest}}", "1"],
        vec!["inspect", "--format", "{{.Digest}}", "1:latest"],
        vec!["tag", "1", "one:2"],
        vec!["history", "1"],
    ] {
        let (code, out, err) = kiln(&other, &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        if args[0] == "inspect" {
            assert_eq!(out, digest);
        }
    }
    let (code, _, err) = kiln(&other, &["rmi", "1:latest"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = kiln(&other, &["images", "-q", "--no-trunc", "one"]);
    assert_eq!(out, digest, "the other name is untouched");
}

/// Point 7: the short digest `kiln images` prints, with or without `sha256:`, names the image
/// in every command; an ambiguous prefix is refused and lists the candidates.
#[test]
fn short_digests_name_images_everywhere() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let digest = build(&store, dir.path(), "app:1", "a=1");
    let short = stdout(&run_ok(&mut store.cmd(["images", "-q"])));
    assert_eq!(short, digest[..19], "images -q prints the short digest");
    let hex12 = &digest[7..19];
    for image in [short.as_str(), hex12, &digest[7..15]] {
        for args in [
            vec!["inspect", "--format", "{{.Digest}}", image],
            vec!["history", image],
            vec!["sbom", "-o", "json", image],
            vec!["scan", "--scanners", "secret,misconfig", image],
        ] {
            let (code, out, err) = kiln(&store, &args);
            assert_eq!(code, 0, "{args:?}: {err}");
            if args[0] == "inspect" {
                assert_eq!(out, digest, "{args:?}");
            }
        }
    }
    let saved = dir.path().join("s.tar");
    run_ok(store.cmd(["save", "-o"]).arg(&saved).arg(hex12));
    run_ok(&mut store.cmd(["tag", hex12, "copy:1"]));
    let (_, out, _) = kiln(&store, &["inspect", "--format", "{{.Digest}}", "copy:1"]);
    assert_eq!(out, digest);

    // Two images whose digests share a first hex digit (17 images always have two).
    let mut by_first: std::collections::BTreeMap<char, Vec<String>> = Default::default();
    let mut i = 0;
    let (first, pair) = loop {
        let d = build(&store, dir.path(), "", &format!("n={i}"));
        let c = d.chars().nth(7).unwrap();
        by_first.entry(c).or_default().push(d);
        if by_first[&c].len() == 2 {
            break (c, by_first[&c].clone());
        }
        i += 1;
    };
    let (code, _, err) = kiln(&store, &["inspect", &format!("sha256:{first}")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("ambiguous") && pair.iter().all(|d| err.contains(d)),
        "{err}"
    );
    // Enough digits pick one again.
    let (code, out, err) = kiln(&store, &["inspect", "--format", "{{.Digest}}", &pair[1][..20]]);
    assert_eq!((code, out.as_str()), (0, pair[1].as_str()), "{err}");
    // Untagged images are removed by prefix too.
    let (code, _, err) = kiln(&store, &["rmi", &pair[0][7..20]]);
    assert_eq!(code, 0, "{err}");
    let listed = stdout(&run_ok(&mut store.cmd(["images", "-q", "--no-trunc"])));
    assert!(!listed.contains(&pair[0]) && listed.contains(&pair[1]), "{listed}");
    // A short word that is not hex enough stays a name.
    let (code, _, err) = kiln(&store, &["inspect", &digest[7..10]]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("\"{}:latest\" not found", &digest[7..10])),
        "{err}"
    );
}

/// Point 8: `images -q` and `images NAME`.
#[test]
fn images_quiet_and_by_name() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let a1 = build(&store, dir.path(), "app:1", "a=1");
    run_ok(&mut store.cmd(["tag", "app:1", "app:latest"]));
    let b = build(&store, dir.path(), "localhost/base:2", "b=1");
    let (_, q, _) = kiln(&store, &["images", "-q", "--no-trunc"]);
    let mut want = vec![a1.clone(), b.clone()];
    want.sort();
    let mut got: Vec<&str> = q.lines().collect();
    got.sort();
    assert_eq!(got, want, "one line per image, not per name");
    let (_, t, _) = kiln(&store, &["images", "app"]);
    let rows: Vec<&str> = t.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{t}");
    assert!(rows.iter().all(|r| r.starts_with("app ")), "{t}");
    let (_, t, _) = kiln(&store, &["images", "app:1"]);
    assert_eq!(t.lines().count(), 2, "{t}");
    let (_, t, _) = kiln(&store, &["images", "-q", "--no-trunc", "localhost/*"]);
    assert_eq!(t, b);
    let (code, t, _) = kiln(&store, &["images", "nothing"]);
    assert_eq!((code, t.lines().count()), (0, 1), "just the header: {t}");
}

/// Point 8: `inspect --format` with docker's template habits, and `--format json` for jq.
#[test]
fn inspect_format_templates_and_json() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        "ctx",
        "FROM scratch\nENV A=1 B=two\nLABEL team=core\nCOPY Dockerfile /\nCMD [\"/run\"]\n",
    );
    let digest = stdout(&run_ok(store.cmd(["build", "-q", "-t", "app:1"]).arg(&ctx)));
    let f = |t: &str| {
        let (code, out, err) = kiln(&store, &["inspect", "--format", t, "app:1"]);
        assert_eq!(code, 0, "{t}: {err}");
        out
    };
    assert_eq!(f("{{.Digest}}"), digest);
    assert!(f("{{json .Config.Env}}").ends_with(r#","A=1","B=two"]"#));
    assert_eq!(f("{{index .Config.Env 2}}"), "B=two");
    assert_eq!(f("{{.Config.Cmd}}"), "[/run]");
    assert_eq!(f(r#"{{index .Config.Labels "team"}}"#), "core");
    assert_eq!(
        f("{{.Os}}/{{.Architecture}}"),
        format!(
            "linux/{}",
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64")
        )
    );
    assert_eq!(f("{{.RepoTags}}"), "[app:1]");
    assert!(f("{{.Id}}").starts_with("sha256:"));
    let (code, _, err) = kiln(&store, &["inspect", "--format", "{{.Nope}}", "app:1"]);
    assert_eq!(code, 2);
    assert!(err.contains("no field .Nope") && err.contains("hint"), "{err}");
    let (code, _, err) = kiln(
        &store,
        &["inspect", "--format", "{{range .Config.Env}}x{{end}}", "app:1"],
    );
    assert_eq!(code, 2, "{err}");

    let jq = require_tool("jq");
    for format in [None, Some("json")] {
        let mut c = store.cmd(["inspect", "app:1"]);
        if let Some(f) = format {
            c.args(["--format", f]);
        }
        let json = run_ok(&mut c).stdout;
        let out = feed(Command::new(&jq).args(["-r", ".digest, .config.config.Env[2]"]), &json);
        assert_eq!(stdout(&out), format!("{digest}\nB=two"));
    }
}

/// Point 8: `save` to standard output and `load` from standard input, through a pipe.
#[test]
fn save_to_stdout_and_load_from_stdin() {
    let (a, b) = (KilnStore::new(), KilnStore::new());
    let dir = tempfile::tempdir().unwrap();
    let digest = build(&a, dir.path(), "app:1", "a=1");
    for format in ["oci-archive", "docker-archive"] {
        let mut save = a
            .cmd(["save", "--format", format, "app:1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let load = b.cmd(["load"]).stdin(save.stdout.take().unwrap()).output().unwrap();
        assert!(save.wait().unwrap().success());
        assert!(load.status.success(), "{}", stderr(&load));
        assert!(stdout(&load).starts_with("Loaded image: app:1 ("), "{}", stdout(&load));
        let (_, out, _) = kiln(&b, &["inspect", "--format", "{{.Digest}}", "app:1"]);
        if format == "oci-archive" {
            assert_eq!(out, digest, "an OCI archive keeps the digest");
        }
        // `-` means the same as nothing.
        let o = a.cmd(["save", "-o", "-", "app:1"]).output().unwrap();
        assert!(o.status.success() && o.stdout.len() > 1024, "{}", stderr(&o));
        let l = feed(&mut b.cmd(["load", "-q", "-i", "-"]), &o.stdout);
        assert_eq!(stdout(&l), digest, "load -q prints the digest");
    }
    // Nothing is left behind in the store's temp dir.
    let tmp = b.path().join("kiln/tmp");
    let left: Vec<_> = fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// Point 8: `kiln history` lists each instruction, newest first, with its layer.
#[test]
fn history_lists_each_instruction() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("big"), vec![b'x'; 5000]).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY big /big\nENV A=1\nCOPY Dockerfile /d\n",
    )
    .unwrap();
    run_ok(store.cmd(["build", "-q", "-t", "h:1"]).arg(&ctx));
    let (code, out, err) = kiln(&store, &["history", "h:1"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows[0].starts_with("LAYER") && rows[0].contains("CREATED BY"), "{out}");
    assert_eq!(rows.len(), 4, "{out}");
    assert!(
        rows[1].contains("COPY Dockerfile /d") && rows[1].starts_with("sha256:"),
        "{out}"
    );
    assert!(rows[2].contains("ENV A=1") && rows[2].starts_with("<empty>"), "{out}");
    assert!(rows[3].contains("COPY big /big"), "{out}");
    let (_, json, _) = kiln(&store, &["history", "--format", "json", "h:1"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let layers: Vec<&serde_json::Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["layer"].as_object().map(|_| &s["layer"]))
        .collect();
    assert_eq!(layers.len(), 2);
    let (_, diff_ids, _) = kiln(&store, &["inspect", "--format", "{{json .RootFS.Layers}}", "h:1"]);
    let diff_ids: Vec<String> = serde_json::from_str(&diff_ids).unwrap();
    assert_eq!(layers[1]["diffID"], diff_ids[0].as_str(), "oldest layer last");
}

/// Point 8: `kiln version` names the commit the binary was built from and its features.
#[test]
fn version_names_the_build_commit_and_features() {
    let store = KilnStore::new();
    let (code, out, err) = kiln(&store, &["version", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let commit = v["commit"].as_str().unwrap();
    assert!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{commit}"
    );
    // It is a commit of this repository.
    run_ok(
        Command::new("git")
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    );
    assert!(
        v["features"].as_array().unwrap().iter().any(|f| f == "completion"),
        "{out}"
    );
    let (_, table, _) = kiln(&store, &["version"]);
    assert!(table.contains(commit) && table.contains("features:"), "{table}");
}

/// Point 8: `kiln completion bash|zsh|fish` write scripts those shells load and complete with.
#[test]
fn completion_scripts_work_in_bash_zsh_and_fish() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let script = |shell: &str| {
        let p = dir.path().join(format!("kiln.{shell}"));
        fs::write(&p, run_ok(&mut store.cmd(["completion", shell])).stdout).unwrap();
        p
    };
    let bash = script("bash");
    let o = run_ok(Command::new(require_tool("bash")).arg("-c").arg(format!(
        "source {}; COMP_WORDS=(kiln ima); COMP_CWORD=1; _kiln kiln ima kiln; echo \"${{COMPREPLY[@]}}\"; \
         COMP_WORDS=(kiln images --no); COMP_CWORD=2; _kiln kiln --no images; echo \"${{COMPREPLY[@]}}\"",
        bash.display()
    )));
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "images", "{lines:?}");
    assert!(lines[1].contains("--no-trunc"), "{lines:?}");
    let fish = script("fish");
    let o = run_ok(
        Command::new(require_tool("fish"))
            .arg("-c")
            .arg(format!("source {}; complete -C 'kiln hist'", fish.display())),
    );
    assert!(stdout(&o).starts_with("history\t"), "{}", stdout(&o));
    let zsh = script("zsh");
    run_ok(Command::new(require_tool("zsh")).arg("-n").arg(&zsh));
    let text = fs::read_to_string(&zsh).unwrap();
    assert!(
        text.starts_with("#compdef kiln") && text.contains("'history:"),
        "zsh script lists subcommands"
    );
    let (code, _, _) = kiln(&store, &["completion", "powershell"]);
    assert_eq!(code, 2);
}

/// Point 9: cosign's `.sig`/`.att` tags are not listed as images unless `--all`, and go
/// away with their image.
#[test]
fn cosign_tags_are_hidden_and_removed_with_their_image() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let digest = build(&store, dir.path(), "app:1", "a=1");
    let other = build(&store, dir.path(), "other:1", "b=1");
    let key = dir.path().join("cosign");
    run_ok(
        store
            .cmd(["generate-key-pair", "--output-key-prefix"])
            .arg(&key)
            .env("COSIGN_PASSWORD", ""),
    );
    let predicate = dir.path().join("p.json");
    fs::write(&predicate, "{}").unwrap();
    for img in ["app:1", "other:1"] {
        run_ok(
            store
                .cmd(["sign", "--key"])
                .arg(key.with_extension("key"))
                .arg(img)
                .env("COSIGN_PASSWORD", ""),
        );
        run_ok(
            store
                .cmd(["attest", "--type", "custom", "--predicate"])
                .arg(&predicate)
                .arg("--key")
                .arg(key.with_extension("key"))
                .arg(img)
                .env("COSIGN_PASSWORD", ""),
        );
    }
    let (_, table, _) = kiln(&store, &["images"]);
    assert_eq!(table.lines().count(), 3, "header and two images:\n{table}");
    assert!(!table.contains("sha256-"), "{table}");
    let (_, all, _) = kiln(&store, &["images", "--all"]);
    let hex = &digest[7..];
    for suffix in [".sig", ".att"] {
        assert!(all.contains(&format!("sha256-{hex}{suffix}")), "{all}");
    }
    let index_has = |hex: &str| {
        let idx = fs::read_to_string(store.path().join("index.json")).unwrap();
        idx.contains(&format!("sha256-{hex}"))
    };
    assert!(index_has(hex) && index_has(&other[7..]));
    let (code, out, err) = kiln(&store, &["rmi", "app:1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Removed"), "{out}");
    assert!(!index_has(hex), "app's .sig and .att tags are gone");
    assert!(index_has(&other[7..]), "other's stay");
    let (_, all, _) = kiln(&store, &["images", "--all", "--no-trunc"]);
    assert!(!all.contains(hex), "{all}");
    // Verification of the other image still works.
    run_ok(
        store
            .cmd(["verify", "--key"])
            .arg(key.with_extension("pub"))
            .arg("other:1"),
    );
}

/// Point 10: read-only commands never create a store.
#[test]
fn read_only_commands_create_no_store() {
    let src = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    build(&src, dir.path(), "app:1", "a=1");
    let archive = dir.path().join("app.tar");
    run_ok(src.cmd(["save", "-o"]).arg(&archive).arg("app:1"));
    fs::write(dir.path().join("k.pub"), "not a key").unwrap();
    let missing = dir.path().join("nonexistent");
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let oci = format!("oci-archive:{}", archive.display());
    for root in [&missing, &empty] {
        let r = root.to_str().unwrap();
        let cases: Vec<(Vec<&str>, i32)> = vec![
            (vec!["images", "--root", r], 0),
            (vec!["images", "-q", "--root", r], 0),
            (vec!["inspect", "--root", r, "app:1"], 2),
            (vec!["inspect", "--root", r, &oci], 0),
            (vec!["history", "--root", r, &oci], 0),
            (vec!["sbom", "--root", r, &oci], 0),
            (vec!["scan", "--scanners", "secret", "--root", r, &oci], 0),
            (vec!["scan", "--scanners", "secret", "--root", r, "app:1"], 2),
            // No store, so no vulnerability database: an environment error naming where
            // the database would be (the store named, not a scratch one).
            (vec!["scan", "--root", r, &oci], 3),
            (vec!["verify", "--key", "k.pub", "--root", r, "app:1"], 2),
            (vec!["save", "-o", "out.tar", "--root", r, &oci], 0),
        ];
        for (args, want) in cases {
            let o = Command::new(kiln_bin())
                .env_remove("KILN_HOME")
                .args(&args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(want), "{args:?}: {}", stderr(&o));
            assert!(!stderr(&o).contains("kiln-empty-store"), "{args:?}: {}", stderr(&o));
            if want == 2 && args[0] == "inspect" {
                assert!(stderr(&o).contains(r), "names the store pointed at: {}", stderr(&o));
            }
            if want == 3 {
                assert!(stderr(&o).contains(&format!("{r}/kiln/vulndb")), "{}", stderr(&o));
            }
            assert!(!missing.exists(), "{args:?} created {}", missing.display());
            let made: Vec<_> = fs::read_dir(&empty).unwrap().flatten().map(|e| e.path()).collect();
            assert!(made.is_empty(), "{args:?} wrote {made:?}");
        }
    }
    // `kiln info` says where the store is (README's skopeo line uses it), creating nothing.
    let o = run_ok(Command::new(kiln_bin()).env("KILN_HOME", &missing).args([
        "info",
        "--format",
        "{{.Store}} {{.StoreExists}}",
    ]));
    assert_eq!(stdout(&o), format!("{} false", missing.display()));
    assert!(!missing.exists());
    // The same through $KILN_HOME.
    let o = Command::new(kiln_bin())
        .env("KILN_HOME", &missing)
        .arg("images")
        .output()
        .unwrap();
    assert!(o.status.success() && !missing.exists());
    // A command that writes creates it.
    run_ok(
        Command::new(kiln_bin())
            .env("KILN_HOME", &missing)
            .arg("load")
            .arg("-i")
            .arg(&archive),
    );
    assert!(missing.join("index.json").is_file());
}

/// Point 11: usage lines never show `--root <DIR>` as required, and `lint`, `login`,
/// `logout` and `generate-key-pair` do not list flags that do nothing for them.
#[test]
fn help_lists_only_flags_that_do_something() {
    let store = KilnStore::new();
    for args in [
        vec!["tag", "only-one"],
        vec!["rmi"],
        vec!["inspect"],
        vec!["build", "--nope"],
    ] {
        let (code, _, err) = kiln(&store, &args);
        assert_eq!(code, 2, "{args:?}");
        let usage = err
            .lines()
            .find(|l| l.starts_with("Usage:"))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(
            !usage.contains("--root"),
            "KILN_HOME is set, yet {args:?} shows: {usage}"
        );
    }
    let help = |cmd: &str| stdout(&run_ok(&mut store.cmd([cmd, "--help"])));
    for cmd in ["lint", "login", "logout", "generate-key-pair", "version", "completion"] {
        assert!(!help(cmd).contains("--root"), "{cmd} --help lists --root");
    }
    let login = help("login");
    for flag in ["--creds", "--jobs"] {
        assert!(!login.contains(flag), "login --help lists {flag}:\n{login}");
    }
    for flag in ["--password-stdin", "--authfile", "--insecure-registry", "--ca-file"] {
        assert!(login.contains(flag), "login --help lacks {flag}");
    }
    for cmd in ["images", "build", "pull", "inspect"] {
        assert!(help(cmd).contains("--root <DIR>"), "{cmd} --help lacks --root");
    }
    // --root works before or after the subcommand; KILN_HOME is still the default.
    let built = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let digest = build(&built, dir.path(), "app:1", "a=1");
    let root = built.path().to_str().unwrap();
    for args in [
        vec!["--root", root, "images", "-q", "--no-trunc"],
        vec!["images", "-q", "--no-trunc", "--root", root],
    ] {
        let o = run_ok(Command::new(kiln_bin()).env_remove("KILN_HOME").args(&args));
        assert_eq!(stdout(&o), digest);
    }
    let (_, out, _) = kiln(&built, &["images", "-q", "--no-trunc"]);
    assert_eq!(out, digest);
}

/// Point 12: a rootless build with `$USER` unset finds the user (getpwuid) and its
/// subordinate ids, so a RUN step can give files to other users.
#[test]
fn rootless_build_finds_the_user_without_user_variable() {
    require_tool("runc");
    require_tool("newuidmap");
    let (uid, gid) = rootless_user();
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let base = tmp.path().join("base");
    kiln_tests::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/base"),
        &base,
        &["setup.sh"],
    )
    .unwrap();
    run_ok(
        Command::new("sh")
            .arg("-eu")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/base/setup.sh"))
            .current_dir(&base),
    );
    let app = context(
        tmp.path(),
        "app",
        "FROM localhost/busybox:test\nRUN touch /owned && chown 1000:1000 /owned && ls -ln /owned\n",
    );
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(tmp.path()),
    );
    let build = |args: &[&str], ctx: &Path| {
        let mut c = Command::new(require_tool("runuser"));
        c.args(["-u", kiln_tests::ROOTLESS_USER, "--", "env", "-i"])
            .arg(format!("HOME={}", tmp.path().display()))
            .arg(format!("KILN_HOME={}", tmp.path().join("store").display()))
            .arg(format!("PATH={}", std::env::var("PATH").unwrap_or_default()))
            .arg(kiln_bin())
            .args(["build", "--progress", "plain"])
            .args(args)
            .arg(ctx)
            .current_dir(tmp.path());
        c.output().unwrap()
    };
    let o = build(&["-t", "localhost/busybox:test"], &base);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = build(&[], &app);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("range for"), "the user was not found: {err}");
    let ls = err
        .lines()
        .find(|l| l.ends_with("/owned") && !l.contains("RUN "))
        .unwrap_or_else(|| panic!("no ls output:\n{err}"));
    let fields: Vec<&str> = ls.split_whitespace().collect();
    assert!(
        fields.windows(2).any(|w| w == ["1000", "1000"]),
        "the file belongs to uid 1000: {ls}"
    );
}

/// Point 13: `--ignore-file` must name an existing file; `exp:` dates must be real dates.
#[test]
fn ignore_files_must_exist_and_dates_must_be_real() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    build(&store, dir.path(), "app:1", "a=1");
    let scan_with = |ignore: &str| {
        kiln(
            &store,
            &["scan", "--scanners", "secret", "--ignore-file", ignore, "app:1"],
        )
    };
    let (code, _, err) = scan_with("/nonexistent/ignore");
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/ignore") && err.contains("hint"), "{err}");
    for (date, ok) in [
        ("2020-13-45", false),
        ("2021-02-29", false),
        ("2024-02-29", true),
        ("2099-12-31", true),
    ] {
        let f = dir.path().join("ignore");
        fs::write(&f, format!("# accepted\nCVE-2024-0001 exp:{date}\n")).unwrap();
        let (code, _, err) = scan_with(f.to_str().unwrap());
        if ok {
            assert_eq!(code, 0, "{date}: {err}");
        } else {
            assert_eq!(code, 2, "{date}");
            assert!(
                err.contains(&format!("{}:2:", f.display())) && err.contains(date),
                "{err}"
            );
        }
    }
    // Without the flag, a missing .kilnignore is fine.
    let (code, _, err) = kiln(&store, &["scan", "--scanners", "secret", "app:1"]);
    assert_eq!(code, 0, "{err}");
}

/// Point 14: `--label` as docker has it, and `-f -` for a Dockerfile on standard input.
#[test]
fn build_labels_and_dockerfile_from_stdin() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("file"), "data\n").unwrap();
    fs::write(ctx.join(".dockerignore"), "ignored\n").unwrap();
    fs::write(ctx.join("ignored"), "no\n").unwrap();
    let dockerfile = "FROM scratch\nLABEL a=1 b=2\nCOPY . /ctx/\n";
    let o = feed(
        store
            .cmd([
                "build",
                "-q",
                "-t",
                "lab:1",
                "--label",
                "b=override",
                "--label",
                "c=new value",
                "-f",
                "-",
            ])
            .arg(&ctx),
        dockerfile.as_bytes(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, labels, _) = kiln(&store, &["inspect", "--format", "{{json .Labels}}", "lab:1"]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["a"], "1");
    assert_eq!(labels["b"], "override", "--label wins over LABEL");
    assert_eq!(labels["c"], "new value");
    // The context's .dockerignore applied, and nothing was written into the context.
    let (_, history, _) = kiln(&store, &["history", "--no-trunc", "lab:1"]);
    assert!(history.contains("COPY . /ctx/"), "{history}");
    let mut names: Vec<String> = fs::read_dir(&ctx)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".dockerignore", "file", "ignored"]);
    let out = dir.path().join("layout");
    run_ok(store.cmd(["copy", "lab:1"]).arg(format!("oci:{}", out.display())));
    // Same digest as the same Dockerfile from a file.
    let df = dir.path().join("Dockerfile.lab");
    fs::write(&df, dockerfile).unwrap();
    let from_file = stdout(&run_ok(
        store
            .cmd(["build", "-q", "--label", "b=override", "--label", "c=new value", "-f"])
            .arg(&df)
            .arg(&ctx),
    ));
    let (_, from_stdin, _) = kiln(&store, &["inspect", "--format", "{{.Digest}}", "lab:1"]);
    assert_eq!(from_file, from_stdin);
    // Errors: empty stdin, a label without =, -f - with --locked.
    let (code, _, err) = kiln(&store, &["build", "-f", "-", ctx.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("standard input"), "{err}");
    let (code, _, err) = kiln(&store, &["build", "--label", "x", ctx.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("KEY=VALUE"), "{err}");
    let (code, _, err) = kiln(&store, &["build", "--locked", "-f", "-", ctx.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("--locked"), "{err}");
}
