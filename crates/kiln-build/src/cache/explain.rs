//! `--explain-cache`: every build keeps, per step, the named hashes its cache key was made
//! from (the step before, the instruction, each context file…); on a miss the previous set
//! is compared with this one, and the message names what changed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_oci::Store;
use sha2::{Digest as _, Sha256};

/// A step's key inputs as kept and compared: name → hex hash.
pub type KeyInputs = BTreeMap<String, String>;

/// A step's key inputs as the solver makes them: names and raw hashes, in the order the key
/// took them. A no-change rebuild only needs their one summary, so the map of hex strings
/// (10,000 names and hashes for a COPY of a 10,000-file context) is made only when the
/// inputs are saved or a miss is explained.
#[derive(Clone, Default)]
pub struct Inputs(Vec<(String, [u8; 32])>);

impl Inputs {
    /// Inputs made of `named`, in that order.
    pub fn new(named: Vec<(String, [u8; 32])>) -> Inputs {
        Inputs(named)
    }

    /// Name → hex hash (a name given twice keeps its last hash, as the key's order does).
    fn to_map(&self) -> KeyInputs {
        self.0.iter().map(|(k, v)| (k.clone(), hex::encode(v))).collect()
    }

    /// The one hash of the inputs (over each name and raw hash, in order).
    fn summary(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.0 {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v);
        }
        hex::encode(h.finalize())
    }
}

/// The input naming the key of what lies below a step.
pub const BELOW: &str = "below";
/// The input naming the step's own definition.
pub const INSTRUCTION: &str = "instruction";
/// The prefix of a context file's input.
pub const FILE: &str = "file ";

/// Where a step's inputs are kept: one file per (Dockerfile, platform, stage, position).
fn path(store: &Store, step: &str) -> PathBuf {
    let id = hex::encode(Sha256::digest(step.as_bytes()));
    store.meta_dir().join("cache-inputs").join(id)
}

/// The previous build's inputs of `step`.
pub fn load(store: &Store, step: &str) -> Option<KeyInputs> {
    serde_json::from_slice(&std::fs::read(path(store, step)).ok()?).ok()
}

/// Where the one hash of a step's kept inputs is: beside them, so that a no-change rebuild
/// compares 64 characters instead of reading, parsing and comparing every input (a COPY of
/// the context has one per file).
fn summary_path(inputs_path: &std::path::Path) -> PathBuf {
    inputs_path.with_extension("sum")
}

/// Keeps `inputs` as `step`'s latest and, when `explain_miss` is `Some(first_step)`, says
/// why the step missed, against the inputs kept before. When the kept summary equals
/// `inputs`' one, as on every no-change rebuild, nothing is read beyond it, nothing is
/// written, and no map of the inputs is made (the explanation is that the record is gone).
/// Otherwise the inputs are written before their summary (a build killed in between leaves
/// an old summary, which differs, and the next build writes both again). Failures only cost
/// the next explanation.
pub fn keep(store: &Store, step: &str, inputs: &Inputs, explain_miss: Option<bool>) -> Option<String> {
    let p = path(store, step);
    let sum_path = summary_path(&p);
    let sum = inputs.summary();
    if std::fs::read(&sum_path).is_ok_and(|old| old == sum.as_bytes()) {
        return explain_miss.map(|_| RECORD_GONE.to_string());
    }
    let previous = explain_miss.and_then(|_| load(store, step));
    let now = inputs.to_map();
    save(store, step, &now);
    let _ = replace(store, &sum_path, sum.as_bytes());
    explain_miss.map(|first_step| explain(previous.as_ref(), &now, first_step))
}

/// Replaces `dest` by a temporary file renamed over it, without fsync: the kept inputs only
/// ever explain (a step's cache key never comes from them), so a crash that loses or empties
/// them costs at most the next explanation (a garbled file reads as "no earlier build";
/// after a power loss a summary may outlive its inputs, and is then only compared, never
/// read for names), while fsyncs on every cold step would cost every build.
fn replace(store: &Store, dest: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = store.tmp_dir();
    std::fs::create_dir_all(&tmp)?;
    let mut f = tempfile::Builder::new().prefix("inputs-").tempfile_in(&tmp)?;
    f.write_all(data)?;
    f.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Keeps `inputs` as `step`'s latest (failures only cost the next explanation). Called
/// only when the kept summary differs, so the kept inputs differ too: they are replaced
/// without being read first.
fn save(store: &Store, step: &str, inputs: &KeyInputs) {
    let p = path(store, step);
    let Some(dir) = p.parent() else { return };
    let bytes = serde_json::to_vec(inputs).expect("maps serialise");
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = replace(store, &p, &bytes);
    }
}

/// Why a step missed, from its previous inputs and its current ones.
fn explain(previous: Option<&KeyInputs>, now: &KeyInputs, first_step: bool) -> String {
    let Some(prev) = previous else {
        return "no earlier build of this step is recorded".into();
    };
    let mut files = vec![];
    let mut others = vec![];
    for name in prev.keys().chain(now.keys().filter(|k| !prev.contains_key(*k))) {
        let (a, b) = (prev.get(name), now.get(name));
        if a == b {
            continue;
        }
        let what = match (a, b) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        };
        match name.strip_prefix(FILE) {
            Some(f) => files.push(format!("{f} ({what})")),
            None if name == BELOW => {}
            None => others.push(format!("{name} {what}")),
        }
    }
    if !files.is_empty() {
        return format!("context file {}", files.join(", "));
    }
    if !others.is_empty() {
        return others.join(", ");
    }
    if prev.get(BELOW) != now.get(BELOW) {
        return if first_step {
            "its base (FROM image, platform or SOURCE_DATE_EPOCH) changed".into()
        } else {
            "a step before it changed".into()
        };
    }
    RECORD_GONE.into()
}

/// Why a step whose inputs are all unchanged missed.
const RECORD_GONE: &str =
    "its inputs are unchanged, but its record is gone (pruned, --no-cache, or the layer was deleted)";

#[cfg(test)]
mod tests {
    use super::*;

    /// `keep` explains only when asked, names a changed input against what it kept, and on
    /// an unchanged summary says the record is gone without reading the kept inputs back.
    #[test]
    fn keep_explains_from_what_it_kept() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let inputs = |app: u8| {
            Inputs::new(vec![
                (BELOW.into(), [1; 32]),
                (INSTRUCTION.into(), [2; 32]),
                (format!("{FILE}app.txt"), [app; 32]),
            ])
        };
        assert_eq!(keep(&store, "s", &inputs(3), None), None);
        assert_eq!(
            keep(&store, "s", &inputs(4), Some(false)).as_deref(),
            Some("context file app.txt (changed)")
        );
        // The same inputs again: only the summary is compared. Its inputs file is made
        // unreadable as JSON to show it is not read.
        std::fs::write(path(&store, "s"), b"not json").unwrap();
        assert_eq!(keep(&store, "s", &inputs(4), Some(true)).as_deref(), Some(RECORD_GONE));
        assert_eq!(
            keep(&store, "t", &inputs(4), Some(true)).as_deref(),
            Some("no earlier build of this step is recorded")
        );
    }

    #[test]
    fn names_what_changed() {
        let a: KeyInputs = [(BELOW, "1"), (INSTRUCTION, "2"), ("file app.txt", "3"), ("file b", "4")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut b = a.clone();
        b.insert("file app.txt".into(), "9".into());
        b.insert(BELOW.into(), "8".into());
        assert_eq!(explain(Some(&a), &b, false), "context file app.txt (changed)");
        let mut c = a.clone();
        c.insert(BELOW.into(), "8".into());
        assert_eq!(explain(Some(&a), &c, false), "a step before it changed");
        assert!(explain(Some(&a), &c, true).contains("base"));
        let mut d = a.clone();
        d.insert(INSTRUCTION.into(), "0".into());
        assert_eq!(explain(Some(&a), &d, false), "instruction changed");
        assert!(explain(None, &a, false).contains("no earlier"));
        assert!(explain(Some(&a), &a, false).contains("record is gone"));
    }
}
