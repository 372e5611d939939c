//! `kiln scan --scanners secret,misconfig`: planted secrets of every kind kiln knows, in files
//! later deleted (whiteout) or overwritten, in a binary, in Env, labels and history, must all
//! be found, each with the layer that holds it and the layer that hid it, and no output format
//! may print a value in full. A corpus of at least 200 innocent files (the Python standard
//! library, public CA certificates, Rust crate sources, lock files, random base64 data) must
//! give no finding. Misconfiguration rules are checked on the same images. Also: a layer that
//! does not match its digest fails the scan with a clear error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{KilnStore, build_busybox_base, run_ok};
use serde_json::Value;

/// Deterministic random strings (xorshift), so secrets look real but never are.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn string(&mut self, charset: &str, n: usize) -> String {
        let c = charset.as_bytes();
        (0..n)
            .map(|_| c[(self.next() % c.len() as u64) as usize] as char)
            .collect()
    }
}

const UPPER32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX: &str = "0123456789abcdef";

fn write(path: &Path, data: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn b64_lines(r: &mut Rng, n: usize) -> String {
    let body = r.string(B64, n);
    body.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The planted secrets: (rule id, file name, content, the secret value).
pub fn planted(seed: u64) -> Vec<(&'static str, &'static str, String, String)> {
    let mut r = Rng(seed);
    let mut out = vec![];
    let mut add = |rule: &'static str, file: &'static str, content: String, value: String| {
        out.push((rule, file, content, value));
    };
    let v = format!("AKIA{}", r.string(UPPER32, 16));
    add(
        "aws-access-key-id",
        "aws.ini",
        format!("[default]\naws_access_key_id = {v}\n"),
        v,
    );
    let v = r.string(B64, 40);
    add(
        "aws-secret-access-key",
        "aws-secret.ini",
        format!("[default]\nregion = eu-west-1\naws_secret_access_key = {v}\n"),
        v,
    );
    let v = format!("AIza{}", r.string(B64URL, 35));
    add("gcp-api-key", "maps.js", format!("const MAPS = \"{v}\";\n"), v);
    let v = format!("{}==", r.string(B64, 86));
    add(
        "azure-storage-account-key",
        "azure.conf",
        format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={v};EndpointSuffix=core.windows.net\n"),
        v,
    );
    let v = format!("{}8Q~{}", r.string(ALNUM, 3), r.string(ALNUM, 34));
    add(
        "azure-client-secret",
        "azure-ad.yaml",
        format!("client_id: x\nclient_secret: {v}\n"),
        v,
    );
    let v = format!("ghp_{}", r.string(ALNUM, 36));
    add(
        "github-token",
        "gh.sh",
        format!("#!/bin/sh\ngit clone https://x:{v}@github.com/o/r\n"),
        v,
    );
    let v = format!("github_pat_{}_{}", r.string(ALNUM, 22), r.string(ALNUM, 59));
    add("github-fine-grained-pat", "gh-pat.txt", format!("{v}\n"), v);
    let v = format!("glpat-{}", r.string(ALNUM, 20));
    add("gitlab-token", "gitlab.env", format!("GITLAB={v}\n"), v);
    let v = format!(
        "xoxb-{}-{}-{}",
        r.string("0123456789", 12),
        r.string("0123456789", 13),
        r.string(ALNUM, 24)
    );
    add("slack-token", "slack.json", format!("{{\"bot\": \"{v}\"}}\n"), v);
    let v = format!(
        "https://hooks.slack.com/services/T{}/B{}/{}",
        r.string(UPPER32, 10),
        r.string(UPPER32, 10),
        r.string(ALNUM, 24)
    );
    add("slack-webhook-url", "notify.py", format!("WEBHOOK = \"{v}\"\n"), v);
    let v = format!("sk_live_{}", r.string(ALNUM, 24));
    add(
        "stripe-secret-key",
        "billing.rb",
        format!("Stripe.api_key = '{v}'\n"),
        v,
    );
    let v = format!("npm_{}", r.string(ALNUM, 36));
    add(
        "npm-access-token",
        ".npmrc",
        format!("//registry.npmjs.org/:_authToken={v}\n"),
        v,
    );
    let v = format!("pypi-AgEIcHlwaS5vcmc{}", r.string(B64URL, 70));
    add(
        "pypi-upload-token",
        ".pypirc",
        format!("[pypi]\nusername = __token__\npassword = {v}\n"),
        v,
    );
    let body = b64_lines(&mut r, 1600);
    add(
        "private-key",
        "id_rsa",
        format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n"),
        body,
    );
    let body = b64_lines(&mut r, 400);
    add(
        "private-key",
        "id_ed25519",
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"),
        body,
    );
    // {"alg":"HS256","typ":"JWT"}
    let v = format!(
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{}.{}",
        r.string(B64URL, 40),
        r.string(B64URL, 43)
    );
    add("jwt", "session.txt", format!("Authorization: Bearer {v}\n"), v);
    let v = r.string(ALNUM, 18);
    add(
        "url-credentials",
        "db.yaml",
        format!("database:\n  url: postgres://app:{v}@db.internal:5432/app\n"),
        v,
    );
    let v = r.string(HEX, 40);
    add(
        "generic-secret-assignment",
        "settings.env",
        format!("SERVICE_API_TOKEN=\"{v}\"\n"),
        v,
    );
    out
}

struct Image {
    store: KilnStore,
    _dir: tempfile::TempDir,
    secrets: Vec<(&'static str, &'static str, String, String)>,
    config_secrets: Vec<String>,
}

/// Busybox base, then: every secret file (layer 2), a deleted and an overwritten copy, a
/// binary with a token, and secrets in Env, a label and a RUN line (history).
fn build_secret_image() -> Image {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    build_busybox_base(&store, dir.path());
    let ctx = dir.path().join("ctx");
    let secrets = planted(0x5ec7_e75e_ed00_0001);
    for (_, file, content, _) in &secrets {
        write(&ctx.join("secrets").join(file), content);
    }
    // Deleted later: present in its layer, whited out by the RUN's layer.
    let mut r = Rng(0xde1e_7ed0_0000_0002);
    let deleted = format!("ghp_{}", r.string(ALNUM, 36));
    write(&ctx.join("gone/deploy.env"), format!("GH={deleted}\n"));
    // Overwritten later by a clean file at the same path.
    let overwritten = format!("sk_live_{}", r.string(ALNUM, 28));
    write(&ctx.join("v1/config.ini"), format!("stripe = {overwritten}\n"));
    write(&ctx.join("v2/config.ini"), "stripe = loaded from the environment\n");
    // A binary: ELF magic, NULs, an embedded npm token.
    let in_binary = format!("npm_{}", r.string(ALNUM, 36));
    let mut bin = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    bin.extend(std::iter::repeat_n(0u8, 3000));
    bin.extend_from_slice(in_binary.as_bytes());
    bin.extend(std::iter::repeat_n(0u8, 3000));
    write(&ctx.join("bin/tool"), &bin);
    let env_secret = format!("AKIA{}", r.string(UPPER32, 16));
    let label_secret = format!("glpat-{}", r.string(ALNUM, 20));
    let history_secret = format!(
        "xoxp-{}-{}-{}",
        r.string("0123456789", 11),
        r.string("0123456789", 12),
        r.string(ALNUM, 32)
    );
    write(
        &ctx.join("Dockerfile"),
        format!(
            "FROM localhost/busybox:test\n\
             COPY secrets/ /app/\n\
             COPY gone/deploy.env /app/deploy.env\n\
             COPY v1/config.ini /etc/app/config.ini\n\
             COPY --chmod=0755 bin/tool /usr/local/bin/tool\n\
             RUN rm /app/deploy.env && echo {history_secret} > /dev/null\n\
             COPY v2/config.ini /etc/app/config.ini\n\
             ENV AWS_ACCESS_KEY_ID={env_secret}\n\
             LABEL ci.token={label_secret}\n\
             EXPOSE 22 8080\n"
        ),
    );
    run_ok(
        store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/secrets:1"])
            .arg(&ctx),
    );
    let mut all = secrets;
    all.push(("github-token", "deploy.env", String::new(), deleted));
    all.push(("stripe-secret-key", "config.ini", String::new(), overwritten));
    all.push(("npm-access-token", "tool", String::new(), in_binary));
    Image {
        store,
        _dir: dir,
        secrets: all,
        config_secrets: vec![env_secret, label_secret, history_secret],
    }
}

fn scan(store: &KilnStore, image: &str, format: &str, scanners: &str) -> (String, String) {
    let out = run_ok(&mut store.cmd(["scan", "--format", format, "--scanners", scanners, image]));
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn every_planted_secret_is_found_and_never_printed() {
    let img = build_secret_image();
    let (json, _) = scan(&img.store, "localhost/secrets:1", "json", "secret,misconfig");
    let report: Value = serde_json::from_str(&json).unwrap();
    let found = report["secrets"].as_array().unwrap();
    let got: BTreeSet<(String, String)> = found
        .iter()
        .map(|s| {
            (
                s["rule"].as_str().unwrap().to_string(),
                s["location"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    for (rule, file, _, _) in &img.secrets {
        let path = match *file {
            "config.ini" => "/etc/app/config.ini".to_string(),
            "tool" => "/usr/local/bin/tool".to_string(),
            f => format!("/app/{f}"),
        };
        want.insert((rule.to_string(), path));
    }
    want.insert(("aws-access-key-id".into(), "AWS_ACCESS_KEY_ID".into()));
    want.insert(("gitlab-token".into(), "ci.token".into()));
    // The RUN line is in history (and so is the ENV instruction that set the key).
    let history: Vec<&Value> = found.iter().filter(|s| s["source"] == "history").collect();
    assert!(history.iter().any(|s| s["rule"] == "slack-token"), "{json}");
    assert!(history.iter().any(|s| s["rule"] == "aws-access-key-id"), "{json}");
    for (rule, loc) in &want {
        assert!(
            got.contains(&(rule.clone(), loc.clone())),
            "missing {rule} at {loc}; found {got:?}"
        );
    }
    let unexpected: Vec<_> = got
        .iter()
        .filter(|(r, l)| !want.contains(&(r.clone(), l.clone())) && !l.starts_with("history["))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected findings (the busybox base must be clean): {unexpected:?}"
    );

    // Deleted and overwritten files are still reported, with both layers.
    let layers = report["layers"].as_array().unwrap().len();
    let by_loc = |loc: &str| found.iter().find(|s| s["location"] == loc).unwrap().clone();
    let d = by_loc("/app/deploy.env");
    // The busybox base has two layers; the Dockerfile adds six.
    assert_eq!(layers, 8);
    assert_eq!(
        (d["layer_index"].as_u64(), d["removed"].as_str()),
        (Some(4), Some("deleted"))
    );
    assert_eq!(d["removed_in_layer"].as_u64(), Some(7));
    let o = by_loc("/etc/app/config.ini");
    assert_eq!(
        (o["layer_index"].as_u64(), o["removed"].as_str()),
        (Some(5), Some("overwritten"))
    );
    assert_eq!(o["removed_in_layer"].as_u64(), Some(8));
    let b = by_loc("/usr/local/bin/tool");
    assert!(
        b["offset"].as_u64().is_some() && b["line"].is_null(),
        "binary: offset, not line: {b}"
    );
    let k = by_loc("/app/aws.ini");
    assert_eq!(k["line"].as_u64(), Some(2));

    let (table, _) = scan(&img.store, "localhost/secrets:1", "table", "secret");
    assert!(table.contains("present in layer 4, deleted in layer 7"), "{table}");
    assert!(table.contains("present in layer 5, overwritten in layer 8"), "{table}");
    let (sarif, _) = scan(&img.store, "localhost/secrets:1", "sarif", "secret,misconfig");

    // Values never appear in full (first four characters and a hash only).
    for (rule, _, _, value) in &img.secrets {
        for (name, text) in [("json", &json), ("table", &table), ("sarif", &sarif)] {
            assert!(
                !text.contains(value.as_str()),
                "{name} output prints the {rule} value in full"
            );
            assert!(
                !text.contains(&value[..value.len().min(12)]),
                "{name} output prints more than 4 characters of {rule}"
            );
        }
    }
    for value in &img.config_secrets {
        for text in [&json, &table, &sarif] {
            assert!(!text.contains(value.as_str()));
        }
    }
    // A docker-archive is scanned in place (no vulnerability scanner) with the same results.
    let archive = img.store.path().join("secrets.tar");
    run_ok(
        img.store
            .cmd(["save", "--format", "docker-archive", "-o"])
            .arg(&archive)
            .arg("localhost/secrets:1"),
    );
    let (from_archive, _) = scan(
        &img.store,
        &format!("docker-archive:{}", archive.display()),
        "json",
        "secret,misconfig",
    );
    let a: Value = serde_json::from_str(&from_archive).unwrap();
    let key = |r: &Value| -> BTreeSet<String> {
        r["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} {}",
                    s["rule"], s["location"], s["layer_index"], s["removed_in_layer"]
                )
            })
            .chain(
                r["misconfigurations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["id"].to_string()),
            )
            .collect()
    };
    assert_eq!(key(&a), key(&report));
    let sarif_file = img.store.path().join("out.sarif");
    std::fs::write(&sarif_file, &sarif).unwrap();
    validate_sarif(&sarif_file);

    // Misconfiguration on the same image: root, secret Env, port 22; the busybox base is not
    // labelled distroless.
    let ids: BTreeSet<&str> = report["misconfigurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from(["KSC001", "KSC003", "KSC004"]), "{json}");
}

fn validate_sarif(doc: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = repo.join(".venv/bin/python3");
    assert!(
        python.is_file(),
        "{} is missing (hint: run scripts/setup)",
        python.display()
    );
    let script = "import json, sys\nimport jsonschema\nschema = json.load(open(sys.argv[1])); doc = json.load(open(sys.argv[2]))\ncls = jsonschema.validators.validator_for(schema)\nerrors = sorted(cls(schema).iter_errors(doc), key=str)\nfor e in errors[:5]: print(e.message, list(e.path))\nsys.exit(1 if errors else 0)";
    run_ok(
        Command::new(python)
            .arg("-c")
            .arg(script)
            .arg(repo.join("tests/schemas/sarif-schema-2.1.0.json"))
            .arg(doc),
    );
}

fn copy_files(from: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool, limit: usize, n: &mut usize) {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(from) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return,
    };
    entries.sort();
    for p in entries {
        if *n >= limit {
            return;
        }
        let md = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(_) => continue,
        };
        let dest = to.join(p.file_name().unwrap());
        if md.is_dir() {
            copy_files(&p, &dest, keep, limit, n);
        } else if keep(&p) {
            // Follow symlinks (the CA directory is mostly links).
            if let Ok(data) = std::fs::read(&p) {
                write(&dest, data);
                *n += 1;
            }
        }
    }
}

/// At least 200 innocent files of the kinds that trip naive scanners.
fn innocent_corpus(root: &Path) -> usize {
    let mut n = 0;
    // Python's standard library: code that handles passwords, tokens, URLs with credentials.
    let out = run_ok(Command::new("python3").args(["-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"]));
    let stdlib = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let py = |p: &Path| p.extension().is_some_and(|e| e == "py") && !p.to_string_lossy().contains("/test");
    copy_files(&stdlib, &root.join("python"), &py, 260, &mut n);
    // Public parts of certificates.
    let mut certs = 0;
    copy_files(
        Path::new("/etc/ssl/certs"),
        &root.join("certs"),
        &|p| p.extension().is_some_and(|e| e == "pem" || e == "crt"),
        60,
        &mut certs,
    );
    n += certs;
    // Rust sources of crypto and HTTP crates (secret keys as types, tokens as parsers).
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let registry = home.join("registry/src");
    let mut crates = 0;
    if let Ok(rd) = std::fs::read_dir(&registry) {
        let mut idx: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        idx.sort();
        for index in idx {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&index)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().into_owned();
                    [
                        "rustls-",
                        "reqwest-",
                        "tar-",
                        "serde_json-",
                        "sha2-",
                        "p256-",
                        "ecdsa-",
                        "flate2-",
                    ]
                    .iter()
                    .any(|c| n.starts_with(c))
                })
                .collect();
            names.sort();
            for c in names {
                let rs = |p: &Path| p.extension().is_some_and(|e| e == "rs" || e == "toml");
                copy_files(
                    &c.join("src"),
                    &root.join("rust").join(c.file_name().unwrap()),
                    &rs,
                    400,
                    &mut crates,
                );
            }
        }
    }
    n += crates;
    // Lock files.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    write(
        &root.join("locks/Cargo.lock"),
        std::fs::read(repo.join("Cargo.lock")).unwrap(),
    );
    write(
        &root.join("locks/package-lock.json"),
        std::fs::read(repo.join("tests/node/package-lock.json")).unwrap(),
    );
    n += 2;
    // Base64 data (random bytes, as in embedded assets and test vectors).
    let mut r = Rng(0xba5e_6400_0000_0003);
    for i in 0..40 {
        let len = 200 + (r.next() % 4000) as usize;
        write(&root.join(format!("data/blob{i:02}.b64")), b64_lines(&mut r, len));
        n += 1;
    }
    write(
        &root.join("config/app.env"),
        "DB_PASSWORD=${DB_PASSWORD}\nAPI_TOKEN=<your-token-here>\nSECRET_KEY_FILE=/run/secrets/key\nDATABASE_URL=postgres://user:password@localhost/db\n",
    );
    n += 1;
    n
}

#[test]
fn innocent_corpus_gives_no_findings() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    let n = innocent_corpus(&ctx.join("corpus"));
    assert!(n >= 200, "only {n} innocent files were collected");
    write(&ctx.join("Dockerfile"), "FROM scratch\nCOPY corpus/ /srv/\nUSER 1000\n");
    run_ok(
        store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/innocent:1"])
            .arg(&ctx),
    );
    let (json, _) = scan(&store, "localhost/innocent:1", "json", "secret");
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        report["secrets"],
        serde_json::json!([]),
        "false positives in {n} innocent files"
    );
}

/// The files `package` installed on this machine (scripts/setup installs it), from dpkg.
fn package_files(package: &str) -> Vec<PathBuf> {
    let out = run_ok(Command::new("dpkg-query").args(["-L", package]));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .collect()
}

/// Copies `package`'s files matching `keep` and its dpkg database entries (`info/*.list`,
/// `*.md5sums`, the status stanza) into `root`, as `apt-get install` would leave them.
fn install_like_dpkg(package: &str, root: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut installed = vec![];
    for f in package_files(package).into_iter().filter(|f| keep(f)) {
        write(&root.join(f.strip_prefix("/").unwrap()), std::fs::read(&f).unwrap());
        installed.push(f);
    }
    let info = Path::new("/var/lib/dpkg/info");
    for e in std::fs::read_dir(info).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        if stem.split(':').next() == Some(package) && (name.ends_with(".list") || name.ends_with(".md5sums")) {
            write(
                &root.join("var/lib/dpkg/info").join(&name),
                std::fs::read(info.join(&name)).unwrap(),
            );
        }
    }
    let status = run_ok(Command::new("dpkg-query").args(["-s", package])).stdout;
    write(&root.join("var/lib/dpkg/status"), status);
    installed
}

#[test]
fn private_keys_precisely_on_real_debian_files() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    build_busybox_base(&store, dir.path());
    let ctx = dir.path().join("ctx");
    // libgnutls30 as Debian installs it: the library compiles six private keys (its FIPS
    // self-test vectors) and many private-key header strings into its read-only data.
    let lib = install_like_dpkg("libgnutls30", &ctx.join("pkg"), &|p| {
        p.file_name().unwrap().to_string_lossy().starts_with("libgnutls.so.30.")
    });
    assert_eq!(lib.len(), 1, "{lib:?}");
    let lib = &lib[0];
    // The same library copied by hand is not the package's: its key blocks are findings.
    write(&ctx.join("own/srv/vendor/libgnutls.so"), std::fs::read(lib).unwrap());
    // python3-os-apply-config's PKG-INFO (its description in apt's Translation-en too) shows
    // `mysql://keystone:foobar@127.0.0.1/keystone`; copied by hand, it is still an example.
    let pkg_info = package_files("python3-os-apply-config")
        .into_iter()
        .find(|p| p.ends_with("PKG-INFO"))
        .expect("python3-os-apply-config's PKG-INFO (hint: run scripts/setup)");
    let text = std::fs::read_to_string(&pkg_info).unwrap();
    assert!(text.contains("mysql://keystone:foobar@127.0.0.1/keystone"));
    write(&ctx.join("own/srv/doc/PKG-INFO"), &text);
    // Real keys from ssh-keygen, in a layer a later RUN deletes, and one kept.
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for (t, f) in [("rsa", "id_rsa"), ("ed25519", "id_ed25519")] {
        run_ok(
            Command::new(kiln_tests::require_tool("ssh-keygen"))
                .args(["-q", "-t", t, "-N", "", "-C", "test", "-f"])
                .arg(keys.join(f)),
        );
    }
    write(
        &ctx.join("ssh/root/.ssh/id_rsa"),
        std::fs::read(keys.join("id_rsa")).unwrap(),
    );
    // A cloud service account's key file: the PEM block inside a JSON string.
    run_ok(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(keys.join("sa.pem")),
    );
    let pem = std::fs::read_to_string(keys.join("sa.pem")).unwrap();
    let sa = serde_json::json!({"type": "service_account", "project_id": "p", "private_key": pem});
    write(&ctx.join("ssh/root/.config/gcloud/key.json"), sa.to_string());
    write(
        &ctx.join("app/etc/app/deploy_key"),
        std::fs::read(keys.join("id_ed25519")).unwrap(),
    );
    write(
        &ctx.join("Dockerfile"),
        "FROM localhost/busybox:test
         COPY pkg/ /
         COPY own/ /
         COPY ssh/ /
         RUN rm -rf /root/.ssh /root/.config
         COPY app/ /
         USER 1000
",
    );
    run_ok(
        store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/realkeys:1"])
            .arg(&ctx),
    );
    let (json, _) = scan(&store, "localhost/realkeys:1", "json", "secret");
    let report: Value = serde_json::from_str(&json).unwrap();
    let found = report["secrets"].as_array().unwrap();
    let at = |loc: &str| -> Vec<&Value> { found.iter().filter(|s| s["location"] == loc).collect() };
    // Nothing from what the package installed, nor from the example URL.
    assert!(at(&lib.display().to_string()).is_empty(), "{json}");
    assert!(at("/srv/doc/PKG-INFO").is_empty(), "{json}");
    // Six key blocks in the hand-copied library, at six offsets; its header strings alone
    // (there are more of them) are not findings.
    let vendored = at("/srv/vendor/libgnutls.so");
    assert_eq!(vendored.len(), 6, "{json}");
    assert!(
        vendored
            .iter()
            .all(|s| s["rule"] == "private-key" && s["offset"].is_u64())
    );
    let bytes = std::fs::read(lib).unwrap();
    let headers = bytes.windows(11).filter(|w| w == b"-----BEGIN ").count();
    assert!(headers > 6, "libgnutls has {headers} BEGIN strings");
    // The deleted key is still in the image, and reported with the layer that hid it.
    let rsa = at("/root/.ssh/id_rsa");
    assert_eq!(rsa.len(), 1, "{json}");
    assert_eq!(rsa[0]["rule"], "private-key");
    assert_eq!(rsa[0]["removed"], "deleted");
    assert_eq!(
        rsa[0]["removed_in_layer"].as_u64().unwrap(),
        rsa[0]["layer_index"].as_u64().unwrap() + 1
    );
    let sa = at("/root/.config/gcloud/key.json");
    assert_eq!(sa.len(), 1, "{json}");
    assert_eq!(
        (sa[0]["rule"].as_str(), sa[0]["removed"].as_str()),
        (Some("private-key"), Some("deleted"))
    );
    assert_eq!(at("/etc/app/deploy_key").len(), 1, "{json}");
    assert_eq!(found.len(), 9, "{json}");
}

#[test]
fn distroless_with_shell_and_world_writable_path_and_setuid() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    build_busybox_base(&store, dir.path());
    let ctx = dir.path().join("ctx");
    write(&ctx.join("tool"), "#!/bin/sh\n");
    write(
        &ctx.join("Dockerfile"),
        "FROM localhost/busybox:test\n\
         COPY --chmod=0777 tool /usr/bin/tool\n\
         COPY --chmod=4755 tool /usr/bin/su-helper\n\
         LABEL com.example.flavor=distroless-static\n\
         USER 0\n",
    );
    run_ok(
        store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/distroless:1"])
            .arg(&ctx),
    );
    let (json, _) = scan(&store, "localhost/distroless:1", "json", "misconfig");
    let report: Value = serde_json::from_str(&json).unwrap();
    let got: BTreeSet<(String, String)> = report["misconfigurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["location"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("KSC002", "config.User"),
        ("KSC005", "/usr/bin/tool"),
        ("KSC006", "/usr/bin/su-helper"),
        ("KSC007", "/bin/sh"),
        ("KSC007", "/bin/busybox"),
    ] {
        assert!(
            got.contains(&(want.0.into(), want.1.into())),
            "missing {want:?} in {got:?}"
        );
    }
}

#[test]
fn a_layer_that_does_not_match_its_digest_fails_the_scan() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    write(&ctx.join("f.txt"), "hello\n");
    write(&ctx.join("Dockerfile"), "FROM scratch\nCOPY f.txt /f.txt\n");
    run_ok(
        store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/tampered:1"])
            .arg(&ctx),
    );
    let inspect = run_ok(&mut store.cmd(["inspect", "localhost/tampered:1"]));
    let v: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let digest = v["manifest"]["layers"][0]["digest"].as_str().unwrap().to_string();
    // Swap the blob's bytes for another valid gzip tar: the content no longer hashes to its name.
    let other_ctx = dir.path().join("other");
    write(&other_ctx.join("g.txt"), "tampered\n");
    write(&other_ctx.join("Dockerfile"), "FROM scratch\nCOPY g.txt /g.txt\n");
    run_ok(
        store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/other:1"])
            .arg(&other_ctx),
    );
    let inspect = run_ok(&mut store.cmd(["inspect", "localhost/other:1"]));
    let o: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let other = o["manifest"]["layers"][0]["digest"].as_str().unwrap().to_string();
    let blob = |d: &str| store.path().join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let bytes = std::fs::read(blob(&other)).unwrap();
    let target = blob(&digest);
    let mut perm = std::fs::metadata(&target).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&target, perm).unwrap();
    std::fs::write(&target, bytes).unwrap();
    let out = store
        .cmd(["scan", "--scanners", "secret", "localhost/tampered:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("layer 1")
            && err.contains(&digest)
            && err.contains("does not match its digest")
            && err.contains("hint:"),
        "{err}"
    );
}
