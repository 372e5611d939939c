//! Secrets never reach the image (issue 3): a random secret passed with `--secret id=s,src=FILE`,
//! another with `--secret id=e,env=VAR`, and a random value passed with `--build-arg TOKEN=…`
//! are used by RUN steps, then searched for in every file kiln wrote under `$KILN_HOME`
//! (blobs raw and decompressed, the snapshot and build caches, index.json, everything), in
//! the build's output and in the `--metadata-file`: never found. The build-arg gets the
//! credential warning, and history names build args without their values.

use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_tests::{KilnStore, build_busybox_base, layout_image, require_tool, run_ok};

/// A random 32-character hex value, different on every run.
fn random_value(label: &str) -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{label}{hex}")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            files_under(&p, out);
        } else if ft.is_file() {
            out.push(p);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every place a value could leak to, as (description, bytes): each file under the store,
/// and the decompressed stream of each compressed blob.
fn store_contents(home: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    files_under(home, &mut files);
    let mut out = Vec::new();
    for f in files {
        let data = std::fs::read(&f).unwrap_or_default();
        let compressed = data.starts_with(&[0x1f, 0x8b]) || data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        if compressed {
            let mut plain = Vec::new();
            kiln_oci::decompress::open_layer_stream(std::io::Cursor::new(data.clone()))
                .and_then(|mut r| r.read_to_end(&mut plain))
                .unwrap_or_else(|e| panic!("{}: cannot decompress: {e}", f.display()));
            out.push((format!("{} (decompressed)", f.display()), plain));
        }
        out.push((f.display().to_string(), data));
    }
    out
}

#[test]
fn run_secrets_and_build_arg_values_never_reach_the_store_or_output() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());

    let file_secret = random_value("filesecret");
    let env_secret = random_value("envsecret");
    let token = random_value("token");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let secret_file = tmp.path().join("secret.txt");
    std::fs::write(&secret_file, &file_secret).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        r#"FROM localhost/busybox:test
ARG TOKEN
RUN --mount=type=secret,id=s cat /run/secrets/s > /dev/null && test -n "$TOKEN" && echo used-file-secret
RUN --mount=type=secret,id=s,target=/etc/app/key,required=true wc -c < /etc/app/key > /secret-length
RUN --mount=type=secret,id=e,env=APP_KEY test "${#APP_KEY}" -eq 41 && echo used-env-secret > /env-ok
RUN --mount=type=secret,id=e,target=/run/e.txt --mount=type=cache,target=/cache test -s /run/e.txt && echo "$TOKEN" | wc -c > /token-length
"#,
    )
    .unwrap();
    let metadata = tmp.path().join("metadata.json");
    let layout = tmp.path().join("out-oci");

    let mut build = store.cmd(["build", "--progress", "plain", "-t", "localhost/secrets:test"]);
    build
        .arg("--secret")
        .arg(format!("id=s,src={}", secret_file.display()))
        .args(["--secret", "id=e,env=KILN_TEST_ENV_SECRET"])
        .env("KILN_TEST_ENV_SECRET", &env_secret)
        .arg("--build-arg")
        .arg(format!("TOKEN={token}"))
        .arg("--metadata-file")
        .arg(&metadata)
        .arg("--output")
        .arg(format!("type=oci,dest={},tar=false", layout.display()))
        .arg(&ctx);
    let out = run_ok(&mut build);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The steps really ran with the secrets (so the search below means something).
    assert!(
        stderr.contains("used-file-secret"),
        "the file secret step did not run:\n{stderr}"
    );

    // A rebuild from the cache must not write them either.
    let mut again = store.cmd(["build", "--progress", "plain", "-t", "localhost/secrets:test"]);
    again
        .arg("--secret")
        .arg(format!("id=s,src={}", secret_file.display()))
        .args(["--secret", "id=e,env=KILN_TEST_ENV_SECRET"])
        .env("KILN_TEST_ENV_SECRET", &env_secret)
        .arg("--build-arg")
        .arg(format!("TOKEN={token}"))
        .arg(&ctx);
    let again = run_ok(&mut again);

    // The build-arg warning points to --secret.
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning:") && l.contains("TOKEN"))
        .unwrap_or_else(|| panic!("no warning about the TOKEN build arg:\n{stderr}"));
    assert!(
        warning.contains("--secret"),
        "the warning should suggest --secret: {warning}"
    );

    // The image: the files the steps wrote hold lengths, not values; history names no value.
    let (_, config) = layout_image(&layout, None).unwrap_or_else(|e| panic!("{e}"));
    let history = config["history"].to_string();
    assert!(
        history.contains("RUN --mount=type=secret,id=s"),
        "history lacks the RUN steps: {history}"
    );
    assert!(
        !history.contains(&token),
        "history holds the build-arg value: {history}"
    );

    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("build stdout".into(), stdout.into_bytes()),
        ("build stderr".into(), stderr.into_bytes()),
        ("rebuild stdout".into(), again.stdout.clone()),
        ("rebuild stderr".into(), again.stderr.clone()),
        (
            metadata.display().to_string(),
            std::fs::read(&metadata).expect("--metadata-file was written"),
        ),
    ];
    let from_store = store_contents(store.path());
    assert!(
        from_store.iter().any(|(p, _)| p.ends_with("index.json")),
        "the store search found no index.json"
    );
    assert!(
        from_store.iter().any(|(p, _)| p.contains("(decompressed)")),
        "the store search decompressed no layer"
    );
    // Positive control: a value the step did write is found, in a decompressed layer.
    assert!(
        from_store
            .iter()
            .any(|(p, b)| p.contains("(decompressed)") && contains(b, "used-env-secret")),
        "the search cannot see into layers: a file the step wrote was not found"
    );
    places.extend(from_store);
    places.extend(store_contents(&layout));
    let mut leaks = Vec::new();
    for (what, value) in [
        ("--secret src=FILE", &file_secret),
        ("--secret env=VAR", &env_secret),
        ("--build-arg TOKEN", &token),
    ] {
        for (place, bytes) in &places {
            if contains(bytes, value) {
                leaks.push(format!("{what} value found in {place}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secret values leaked:\n{}", leaks.join("\n"));

    // Nothing of the steps is left mounted (secrets live on a tmpfs per step).
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let home = store.path().display().to_string();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&home)).collect();
    assert!(left.is_empty(), "mounts left under the store:\n{}", left.join("\n"));
}

/// A failing step that prints its secret (from the environment and from the file): kiln's
/// progress and the error's output tail show the step's other lines, but the value is masked;
/// nothing is tagged.
#[test]
fn run_secret_in_a_failing_step_is_not_in_the_error() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    let secret = random_value("failsecret");
    let secret_file = tmp.path().join("secret.txt");
    std::fs::write(&secret_file, &secret).unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox:test\nRUN --mount=type=secret,id=s,env=S --mount=type=secret,id=s echo visible-line && echo \"$S\" && cat /run/secrets/s && exit 7\n",
    )
    .unwrap();
    let mut c = store.cmd(["build", "--progress", "plain", "-t", "localhost/fails:test", "--secret"]);
    c.arg(format!("id=s,src={}", secret_file.display())).arg(&ctx);
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("visible-line") && stderr.contains("exit code 7"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&secret),
        "the secret is in the error output:\n{stderr}"
    );
    assert!(
        !store.index().to_string().contains("localhost/fails"),
        "a failed build was tagged"
    );
    for (place, bytes) in store_contents(store.path()) {
        assert!(!contains(&bytes, &secret), "the secret is in {place}");
    }
}
