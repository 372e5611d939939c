//! Image efficiency and wasted bytes, computed as dive computes them, so `kiln analyze` and
//! `dive --ci` give the same numbers for the same image.
//!
//! dive's model (its `filetree` package, read and re-derived here, not copied): each layer is
//! a tree of its tar entries; only the leaves of that tree are counted. Every counted leaf
//! adds its size to its path's cumulative size and may lower the path's smallest size; a
//! whiteout counts as the size of the directory it removes (everything under it in the
//! layers below), or 0 for a removed file. A path seen in two or more leaves is
//! "inefficient", and wasted bytes are the sum of those paths' cumulative sizes (every copy,
//! the kept one included). Efficiency is Σ smallest / Σ cumulative over all paths (1 when
//! nothing has a size). Opaque-directory markers are ignored. A whiteout of a path the
//! layers below do not have stops the counting of the rest of that layer, as in dive.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use kiln_oci::walk::{Change, Kind};
use serde::Serialize;

/// A path counted in more than one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inefficiency {
    /// The path (absolute).
    pub path: String,
    /// How many layer leaves it appears in (additions, changes and removals).
    pub count: usize,
    /// Its cumulative size over them (bytes).
    pub cumulative_size: u64,
    /// 0-based layers it appears in, in order.
    pub layers: Vec<usize>,
}

/// dive's numbers for an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Efficiency {
    /// Σ smallest / Σ cumulative, in 0..=1.
    pub score: f64,
    /// Bytes of every inefficient path's copies.
    pub wasted_bytes: u64,
    /// Per layer: the sum of its entries' sizes (dive's layer size).
    pub layer_sizes: Vec<u64>,
    /// Inefficient paths, largest first.
    pub inefficiencies: Vec<Inefficiency>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Payload {
    dir: bool,
    size: u64,
    whiteout: bool,
}

/// One layer as dive's tree: node path (whiteouts keep their `.wh.` name) → payload.
#[derive(Default)]
struct LayerTree {
    nodes: HashMap<String, Payload>,
    parents: HashSet<String>,
}

fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Depth-first, children before parents, siblings by name: dive's visiting order.
fn post_order(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.split('/').skip(1), b.split('/').skip(1));
    loop {
        match (x.next(), y.next()) {
            (Some(p), Some(q)) if p == q => continue,
            (Some(p), Some(q)) => return p.cmp(q),
            (Some(_), None) => return Ordering::Less,
            (None, Some(_)) => return Ordering::Greater,
            (None, None) => return Ordering::Equal,
        }
    }
}

impl LayerTree {
    fn ensure_parents(&mut self, path: &str) {
        let mut p = path;
        while p != "/" {
            let up = parent(p);
            if up == "/" {
                break;
            }
            self.parents.insert(up.to_string());
            self.nodes.entry(up.to_string()).or_default();
            p = up;
        }
    }

    fn from_changes(changes: &[Change]) -> LayerTree {
        let mut t = LayerTree::default();
        for c in changes {
            let (path, payload) = match c {
                Change::Put(p, _) if p == "/" => continue,
                Change::Put(p, m) => (
                    p.clone(),
                    Payload {
                        dir: m.kind == Kind::Dir,
                        size: m.size,
                        whiteout: false,
                    },
                ),
                Change::Whiteout(p) if p == "/" => continue,
                Change::Whiteout(p) => (
                    join(
                        parent(p),
                        &format!(".wh.{}", &p[parent(p).len() + usize::from(parent(p) != "/")..]),
                    ),
                    Payload {
                        whiteout: true,
                        ..Payload::default()
                    },
                ),
                Change::Opaque(d) => {
                    if d != "/" {
                        t.ensure_parents(d);
                        t.nodes.entry(d.clone()).or_default();
                    }
                    continue;
                }
            };
            t.ensure_parents(&path);
            t.nodes.insert(path, payload);
        }
        t
    }

    fn sorted(&self) -> Vec<(&str, Payload)> {
        let mut v: Vec<(&str, Payload)> = self.nodes.iter().map(|(k, p)| (k.as_str(), *p)).collect();
        v.sort_by(|a, b| post_order(a.0, b.0));
        v
    }
}

/// The whiteout's target: its node path without the `.wh.` prefix on the last name.
fn target(node: &str) -> String {
    let dir = parent(node);
    let name = node.rsplit('/').next().unwrap_or("");
    join(dir, name.strip_prefix(".wh.").unwrap_or(name))
}

/// The stacked tree of the layers below: node path → payload.
struct Stacked(BTreeMap<String, Payload>);

impl Stacked {
    fn add(&mut self, path: &str, payload: Payload) {
        let mut p = parent(path);
        while p != "/" {
            self.0.entry(p.to_string()).or_default();
            p = parent(p);
        }
        self.0.insert(path.to_string(), payload);
    }

    fn remove(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let doomed: Vec<String> = self
            .0
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.0.remove(&k);
        }
        self.0.remove(path);
    }

    /// dive's whiteout size: a directory's subtree (itself included), a file's nothing;
    /// `None` when the path is not there.
    fn removed_size(&self, path: &str) -> Option<u64> {
        let node = self.0.get(path)?;
        if !node.dir {
            return Some(0);
        }
        let prefix = format!("{path}/");
        let under: u64 = self
            .0
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, n)| n.size)
            .sum();
        Some(node.size + under)
    }

    fn stack(&mut self, layer: &LayerTree) {
        for (path, p) in layer.sorted() {
            if p.whiteout {
                self.remove(&target(path));
            } else {
                self.add(path, p);
            }
        }
    }
}

#[derive(Default)]
struct PathData {
    count: usize,
    cumulative: u64,
    min: Option<u64>,
    layers: Vec<usize>,
}

/// Computes dive's efficiency, wasted bytes and inefficient paths for layers' changes.
pub fn analyze(layers: &[Vec<Change>]) -> Efficiency {
    let trees: Vec<LayerTree> = layers.iter().map(|c| LayerTree::from_changes(c)).collect();
    let layer_sizes = layers
        .iter()
        .map(|c| {
            c.iter()
                .map(|ch| match ch {
                    Change::Put(_, m) => m.size,
                    _ => 0,
                })
                .sum()
        })
        .collect();
    let mut data: HashMap<String, PathData> = HashMap::new();
    let mut stacked = Stacked(
        trees
            .first()
            .map(|t| t.nodes.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default(),
    );
    for (i, tree) in trees.iter().enumerate() {
        for (path, p) in tree.sorted() {
            if tree.parents.contains(path) {
                continue;
            }
            let (key, size) = if p.whiteout {
                let t = target(path);
                match stacked.removed_size(&t) {
                    Some(s) => (t, s),
                    // dive stops counting this layer at a whiteout of nothing.
                    None => break,
                }
            } else {
                (path.to_string(), p.size)
            };
            let d = data.entry(key).or_default();
            d.count += 1;
            d.cumulative += size;
            d.min = Some(d.min.map_or(size, |m| m.min(size)));
            d.layers.push(i);
        }
        stacked.stack(tree);
    }
    summarize(data, layer_sizes)
}

fn summarize(data: HashMap<String, PathData>, layer_sizes: Vec<u64>) -> Efficiency {
    let (mut minimum, mut discovered) = (0u64, 0u64);
    let mut inefficiencies = Vec::new();
    for (path, d) in data {
        minimum += d.min.unwrap_or(0);
        discovered += d.cumulative;
        if d.count >= 2 {
            inefficiencies.push(Inefficiency {
                path,
                count: d.count,
                cumulative_size: d.cumulative,
                layers: d.layers,
            });
        }
    }
    inefficiencies.sort_by(|a, b| b.cumulative_size.cmp(&a.cumulative_size).then(a.path.cmp(&b.path)));
    Efficiency {
        score: if discovered == 0 {
            1.0
        } else {
            minimum as f64 / discovered as f64
        },
        wasted_bytes: inefficiencies.iter().map(|i| i.cumulative_size).sum(),
        layer_sizes,
        inefficiencies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::walk::Meta;

    fn put(p: &str, size: u64) -> Change {
        Change::Put(
            p.into(),
            Meta {
                kind: Kind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size,
                link: None,
            },
        )
    }

    fn dir(p: &str) -> Change {
        Change::Put(
            p.into(),
            Meta {
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                link: None,
            },
        )
    }

    #[test]
    fn overwritten_and_removed_files_are_waste() {
        let layers = vec![
            vec![dir("/a"), put("/a/big", 100), put("/a/keep", 10)],
            vec![dir("/a"), put("/a/big", 100)],
            vec![Change::Whiteout("/a/keep".into())],
        ];
        let e = analyze(&layers);
        // /a/big: 200 cumulative, min 100; /a/keep: 10 + 0, min 0.
        assert_eq!(e.wasted_bytes, 210);
        assert_eq!(e.score, 100.0 / 210.0);
        assert_eq!(e.layer_sizes, vec![110, 100, 0]);
        assert_eq!(e.inefficiencies[0].path, "/a/big");
    }

    #[test]
    fn whiteout_of_a_directory_counts_its_subtree_once() {
        let layers = vec![
            vec![dir("/d"), put("/d/x", 5), put("/d/y", 7)],
            vec![Change::Whiteout("/d".into())],
        ];
        let e = analyze(&layers);
        // "/d" was never a leaf below, so the whiteout is its only leaf: no waste.
        assert_eq!(e.wasted_bytes, 0);
        assert_eq!(e.score, 24.0 / 24.0);
    }

    #[test]
    fn a_whiteout_of_nothing_stops_the_layer() {
        let layers = vec![vec![put("/a", 1)], vec![Change::Whiteout("/nope".into()), put("/z", 3)]];
        let e = analyze(&layers);
        assert_eq!(e.layer_sizes, vec![1, 3]);
        assert_eq!(e.score, 1.0, "/z is never counted: {e:?}");
    }

    #[test]
    fn empty_image_is_fully_efficient() {
        assert_eq!(analyze(&[]).score, 1.0);
    }
}
