//! Replaying layers' changes: the final filesystem, what each layer added, changed and
//! removed, and when a path disappears after the layer that put it there.
//!
//! The rules are the OCI image spec's: a whiteout removes the path and everything under it,
//! an opaque directory hides everything under it, and both apply only to what lower layers
//! put there; an entry that is not a directory replaces whatever was at its path, subtree
//! included.

use std::collections::{BTreeMap, HashSet};

use super::{Change, Kind, Meta};

/// A path of the final filesystem and the layer its entry came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 0-based index of the layer that put it there.
    pub layer: usize,
    /// Its metadata.
    pub meta: Meta,
}

/// The filesystem a container sees: absolute path → entry, after every layer applied so far.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

/// What one layer did to the filesystem below it. Paths are sorted; a path put and removed
/// within the same layer does not appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerDiff {
    /// Paths that did not exist below.
    pub added: Vec<String>,
    /// Paths that existed below and were replaced (content or metadata).
    pub changed: Vec<String>,
    /// Paths from below that are gone (whiteouts, opaque directories, a file over a directory).
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Added,
    Changed,
    Removed,
}

impl Tree {
    /// The final filesystem of `layers` (base first).
    pub fn of<'a>(layers: impl IntoIterator<Item = &'a [Change]>) -> Tree {
        let mut t = Tree::default();
        for (i, changes) in layers.into_iter().enumerate() {
            t.replay(i, changes, None);
        }
        t
    }

    /// Applies layer `layer`'s changes (layers must come in order, base first) and says what
    /// the layer added, changed and removed.
    pub fn apply(&mut self, layer: usize, changes: &[Change]) -> LayerDiff {
        let mut status = BTreeMap::new();
        self.replay(layer, changes, Some(&mut status));
        let mut diff = LayerDiff::default();
        for (path, s) in status {
            match s {
                Status::Added => diff.added.push(path),
                Status::Changed => diff.changed.push(path),
                Status::Removed => diff.removed.push(path),
            }
        }
        diff
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Every entry, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(p, n)| (p.as_str(), n))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing is there.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn replay(&mut self, layer: usize, changes: &[Change], mut status: Option<&mut BTreeMap<String, Status>>) {
        for c in changes {
            match c {
                Change::Whiteout(p) => {
                    if self.nodes.get(p).is_some_and(|n| n.layer < layer) {
                        self.nodes.remove(p);
                        note_gone(&mut status, p, true);
                    }
                    self.remove_under(p, layer, true, &mut status);
                }
                Change::Opaque(d) => self.remove_under(d, layer, true, &mut status),
                Change::Put(p, meta) => {
                    if meta.kind != Kind::Dir {
                        self.remove_under(p, layer, false, &mut status);
                    }
                    let old = self.nodes.insert(
                        p.clone(),
                        Node {
                            layer,
                            meta: meta.clone(),
                        },
                    );
                    if let Some(st) = status.as_deref_mut() {
                        match old {
                            Some(o) if o.layer < layer => {
                                st.insert(p.clone(), Status::Changed);
                            }
                            Some(_) => {}
                            None => {
                                let s = if st.get(p) == Some(&Status::Removed) {
                                    Status::Changed
                                } else {
                                    Status::Added
                                };
                                st.insert(p.clone(), s);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Removes every entry strictly under `dir` while applying layer `layer` (with
    /// `only_lower`, only what lower layers put there).
    fn remove_under(
        &mut self,
        dir: &str,
        layer: usize,
        only_lower: bool,
        status: &mut Option<&mut BTreeMap<String, Status>>,
    ) {
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        let doomed: Vec<(String, bool)> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, n)| !only_lower || n.layer < layer)
            .map(|(k, n)| (k.clone(), n.layer < layer))
            .collect();
        for (k, lower) in doomed {
            // A path this layer replaced was there below too.
            let from_below = lower || status.as_deref().is_some_and(|s| s.get(&k) == Some(&Status::Changed));
            self.nodes.remove(&k);
            note_gone(status, &k, from_below);
        }
    }
}

/// Records that `path` went away: a path from below is removed; one this layer added simply
/// never was.
fn note_gone(status: &mut Option<&mut BTreeMap<String, Status>>, path: &str, from_below: bool) {
    if let Some(st) = status.as_deref_mut() {
        if from_below {
            st.insert(path.to_string(), Status::Removed);
        } else {
            st.remove(path);
        }
    }
}

/// How a path stops being visible after the layer that put it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Removal {
    /// A whiteout or an opaque directory removed it.
    Deleted,
    /// A later layer wrote another entry at the same path.
    Overwritten,
}

/// Per-layer indexes for "is this path removed later?" (a secret in a deleted file is still in
/// the image, and the report says which layer hid it).
#[derive(Debug, Default)]
pub struct Removals {
    puts: Vec<HashSet<String>>,
    whiteouts: Vec<HashSet<String>>,
    opaques: Vec<HashSet<String>>,
}

impl Removals {
    /// Indexes the changes of every layer (base first).
    pub fn new<'a>(layers: impl IntoIterator<Item = &'a [Change]>) -> Removals {
        let mut r = Removals::default();
        for changes in layers {
            let (mut p, mut w, mut o) = (HashSet::new(), HashSet::new(), HashSet::new());
            for c in changes {
                match c {
                    Change::Put(x, m) if m.kind != Kind::Dir => {
                        p.insert(x.clone());
                    }
                    Change::Put(..) => {}
                    Change::Whiteout(x) => {
                        w.insert(x.clone());
                    }
                    Change::Opaque(x) => {
                        o.insert(x.clone());
                    }
                }
            }
            r.puts.push(p);
            r.whiteouts.push(w);
            r.opaques.push(o);
        }
        r
    }

    /// The first layer after `layer` that removes or replaces `path`, and how.
    pub fn after(&self, path: &str, layer: usize) -> Option<(usize, Removal)> {
        for j in layer + 1..self.puts.len() {
            if self.puts[j].contains(path) {
                return Some((j, Removal::Overwritten));
            }
            let mut p = path;
            loop {
                if self.whiteouts[j].contains(p) {
                    return Some((j, Removal::Deleted));
                }
                let Some((parent, _)) = p.rsplit_once('/') else { break };
                let parent = if parent.is_empty() { "/" } else { parent };
                if self.opaques[j].contains(parent) {
                    return Some((j, Removal::Deleted));
                }
                if parent == "/" {
                    break;
                }
                p = parent;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(p: &str, kind: Kind) -> Change {
        Change::Put(
            p.into(),
            Meta {
                kind,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 0,
                link: None,
            },
        )
    }

    fn layers() -> Vec<Vec<Change>> {
        vec![
            vec![
                put("/app", Kind::Dir),
                put("/app/a", Kind::File),
                put("/app/b", Kind::File),
                put("/etc/c", Kind::File),
                put("/etc/d", Kind::File),
            ],
            vec![Change::Whiteout("/app/a".into()), put("/etc/c", Kind::File)],
            vec![Change::Opaque("/app".into()), put("/app/new", Kind::File)],
            vec![Change::Whiteout("/etc".into())],
        ]
    }

    #[test]
    fn deletions_overwrites_and_opaque_directories() {
        let layers = layers();
        let r = Removals::new(layers.iter().map(Vec::as_slice));
        assert_eq!(r.after("/app/a", 0), Some((1, Removal::Deleted)));
        assert_eq!(r.after("/etc/c", 0), Some((1, Removal::Overwritten)));
        assert_eq!(r.after("/app/b", 0), Some((2, Removal::Deleted)));
        assert_eq!(r.after("/app/new", 2), None);
        assert_eq!(r.after("/etc/d", 0), Some((3, Removal::Deleted)));
        let t = Tree::of(layers.iter().map(Vec::as_slice));
        let paths: Vec<&str> = t.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["/app", "/app/new"]);
        assert_eq!(t.get("/app/new").unwrap().layer, 2);
    }

    #[test]
    fn each_layer_says_what_it_added_changed_and_removed() {
        let layers = layers();
        let mut t = Tree::default();
        let diffs: Vec<LayerDiff> = layers.iter().enumerate().map(|(i, l)| t.apply(i, l)).collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(diffs[0].added, s(&["/app", "/app/a", "/app/b", "/etc/c", "/etc/d"]));
        assert_eq!(
            (
                diffs[1].added.clone(),
                diffs[1].changed.clone(),
                diffs[1].removed.clone()
            ),
            (vec![], s(&["/etc/c"]), s(&["/app/a"]))
        );
        assert_eq!(diffs[2].added, s(&["/app/new"]));
        assert_eq!(diffs[2].removed, s(&["/app/b"]));
        assert_eq!(diffs[3].removed, s(&["/etc/c", "/etc/d"]));
    }

    #[test]
    fn whiteouts_hide_only_lower_layers_and_files_replace_directories() {
        // A whiteout listed after a file of its own layer leaves that file alone (spec).
        let layers = [
            vec![put("/x", Kind::File), put("/d", Kind::Dir), put("/d/f", Kind::File)],
            vec![
                put("/x", Kind::File),
                Change::Whiteout("/x".into()),
                put("/d", Kind::Symlink),
            ],
        ];
        let mut t = Tree::default();
        t.apply(0, &layers[0]);
        let diff = t.apply(1, &layers[1]);
        assert_eq!(t.get("/x").unwrap().layer, 1);
        assert!(t.get("/d/f").is_none(), "a symlink over a directory hides its files");
        assert_eq!(diff.changed, ["/d", "/x"]);
        assert_eq!(diff.removed, ["/d/f"]);
    }
}
