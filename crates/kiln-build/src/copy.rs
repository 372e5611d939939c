//! COPY and ADD: which files a step copies (from the context, a stage or an image), where
//! they land in the stage's rootfs, and the layer entries that record them.
//!
//! Split in two so that the cache can be consulted cheaply: [`collect`] walks the source
//! and gives the items and a content key; only on a cache miss does [`materialize`] resolve
//! destinations against the rootfs and produce layer entries.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use kiln_oci::layer::{EntryKind, FileSource, LayerEntry};
use sha2::{Digest as _, Sha256};

use crate::error::StepError;
use crate::statcache::StatCache;
use crate::tree::{self, Node, NodeKind, Tree};
use kiln_plan::plan::CopyOp;

/// One thing to copy, relative to where it lands.
#[derive(Debug, Clone)]
pub struct Item {
    /// Path under the destination directory (`a/b`), or, when `single_file`, its base name.
    pub rel: String,
    /// Source metadata.
    pub node: Node,
    /// True for a file named directly as a source (it may become the destination itself).
    pub single_file: bool,
}

/// What a COPY will do, before looking at the destination.
pub struct Collected {
    /// Items in walk order.
    pub items: Vec<Item>,
    /// Heredoc files (name, content).
    pub inline: Vec<(String, Vec<u8>)>,
    /// sha256 over everything that determines the result: the cache key's input part.
    pub content_key: [u8; 32],
    /// Per item (path under the destination), the hash of what it contributes to the key,
    /// kept for `--explain-cache`.
    pub item_hashes: ItemHashes,
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one path component: `*`, `?`, `[…]` classes with ranges and
/// `^` negation, and `\` escapes.
pub fn match_component(pattern: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| m(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && m(&p[1..], &n[1..]),
            Some('[') => {
                let Some(c) = n.first() else { return false };
                let mut i = 1;
                // Go negates a class with `^` only; `[!x]` matches `!` or `x` (as in BuildKit).
                let negate = p.get(1) == Some(&'^');
                if negate {
                    i += 1;
                }
                let mut matched = false;
                let mut first = true;
                while i < p.len() && (p[i] != ']' || first) {
                    first = false;
                    let mut lo = p[i];
                    if lo == '\\' && i + 1 < p.len() {
                        i += 1;
                        lo = p[i];
                    }
                    let mut hi = lo;
                    if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
                        hi = p[i + 2];
                        i += 2;
                    }
                    if lo <= *c && *c <= hi {
                        matched = true;
                    }
                    i += 1;
                }
                if i >= p.len() {
                    return false; // unterminated class never matches
                }
                matched != negate && m(&p[i + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && m(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && m(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

/// Expands a source pattern into matching paths of the tree (sorted).
fn expand_pattern(tree: &dyn Tree, pattern: &str) -> Result<Vec<String>, std::io::Error> {
    let clean = tree::clean_rel(pattern);
    if !has_wildcard(&clean) {
        let resolved = tree::resolve(tree, &clean, true)?;
        return Ok(match tree.lstat(&resolved)? {
            Some(_) => vec![clean],
            None => vec![],
        });
    }
    let mut current = vec![String::new()];
    for comp in clean.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &current {
            if has_wildcard(comp) {
                let dir = tree::resolve(tree, base, true)?;
                if !tree.lstat(&dir)?.is_some_and(|n| n.is_dir()) {
                    continue;
                }
                for name in tree.list(&dir)? {
                    if match_component(comp, &name) {
                        next.push(tree::join(base, &name));
                    }
                }
            } else {
                let p = tree::join(base, comp);
                let r = tree::resolve(tree, &p, true)?;
                if tree.lstat(&r)?.is_some() {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    current.sort();
    Ok(current)
}

/// Walks the sources of a COPY and computes its content key. `hasher` hashes context files
/// through the stat cache; for stage and image sources the caller passes `None` because
/// the source's own cache key already identifies its content.
pub fn collect(
    op: &CopyOp,
    tree: &dyn Tree,
    stat_cache: Option<&StatCache>,
    instruction: &str,
) -> Result<Collected, StepError> {
    let excludes = if op.excludes.is_empty() {
        None
    } else {
        Some(
            kiln_dockerfile::dockerignore::Matcher::parse(&op.excludes.join("\n")).map_err(|e| {
                StepError::new(
                    format!("invalid --exclude pattern: {e}"),
                    "use .dockerignore pattern syntax",
                )
            })?,
        )
    };
    // The stat cache's file (a line per context file) is parsed beside the walk.
    let items = std::thread::scope(|s| {
        if let Some(sc) = stat_cache {
            s.spawn(|| sc.preload());
        }
        collect_items(op, tree, excludes.as_ref(), instruction)
    })?;
    let inline: Vec<(String, Vec<u8>)> = op
        .inline
        .iter()
        .map(|f| (f.name.clone(), f.content.clone().into_bytes()))
        .collect();
    let (content_key, item_hashes) = content_key(op, &items, &inline, stat_cache).map_err(io_err)?;
    Ok(Collected {
        items,
        inline,
        content_key,
        item_hashes,
    })
}

fn io_err(e: std::io::Error) -> StepError {
    StepError::new(
        format!("reading sources: {e}"),
        "check the paths named in the instruction",
    )
}

/// The items of a COPY's sources, in walk order.
fn collect_items(
    op: &CopyOp,
    tree: &dyn Tree,
    excludes: Option<&kiln_dockerfile::dockerignore::Matcher>,
    instruction: &str,
) -> Result<Vec<Item>, StepError> {
    let io = io_err;
    let mut items = Vec::new();
    for src in &op.sources {
        let matches = expand_pattern(tree, src).map_err(io)?;
        if matches.is_empty() {
            let what = if op.from == kiln_plan::plan::CopyFrom::Context {
                "not found in the build context (or excluded by .dockerignore)"
            } else {
                "not found in the source stage or image"
            };
            return Err(StepError::new(
                format!("{instruction}: source {src:?} {what}"),
                "check the path relative to the context root, and .dockerignore",
            ));
        }
        for m in matches {
            let resolved = tree::resolve(tree, &m, true).map_err(io)?;
            let node = tree.lstat(&resolved).map_err(io)?.expect("matched paths exist");
            let base_rel = if op.parents { m.clone() } else { String::new() };
            if node.is_dir() {
                if op.parents {
                    items.push(Item {
                        rel: base_rel.clone(),
                        node: node.clone(),
                        single_file: false,
                    });
                }
                walk(tree, &resolved, &base_rel, &mut items, excludes).map_err(io)?;
            } else {
                let name = m.rsplit('/').next().unwrap_or(&m).to_string();
                if excludes.is_some_and(|x| x.is_excluded(&m)) {
                    continue;
                }
                let rel = if op.parents { m.clone() } else { name };
                items.push(Item {
                    rel,
                    node,
                    single_file: !op.parents,
                });
            }
        }
    }
    Ok(items)
}

/// One directory's visible entries (those `--exclude` drops left out), with their nodes
/// (`None` for what vanished or .dockerignore hides).
type Listing = Vec<(String, Option<Node>)>;

/// Appends everything under `dir` (shown as `rel`) to `out`, depth first in name order.
/// The directories are read a level at a time, the directories of a level side by side
/// (a context of 100 directories of 100 files is stat on every core), then the items are
/// put in walk order.
fn walk(
    tree: &dyn Tree,
    dir: &str,
    rel: &str,
    out: &mut Vec<Item>,
    excludes: Option<&kiln_dockerfile::dockerignore::Matcher>,
) -> std::io::Result<()> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    let mut listings: HashMap<String, Listing> = HashMap::new();
    let mut level: Vec<(String, String)> = vec![(dir.to_string(), rel.to_string())];
    while !level.is_empty() {
        let read = |_, (d, r): &(String, String)| list_dir(tree, d, r, excludes);
        let read_all = if level.len() == 1 {
            vec![read(0, &level[0])?]
        } else {
            kiln_oci::parallel::try_map_ordered(&level, workers, read)?
        };
        let mut next = Vec::new();
        for ((d, r), listing) in level.iter().zip(read_all) {
            for (name, node) in &listing {
                if node.as_ref().is_some_and(Node::is_dir) {
                    next.push((tree::join(d, name), tree::join(r, name)));
                }
            }
            listings.insert(d.clone(), listing);
        }
        level = next;
    }
    put_in_walk_order(dir, rel, &mut listings, out);
    Ok(())
}

fn list_dir(
    tree: &dyn Tree,
    dir: &str,
    rel: &str,
    excludes: Option<&kiln_dockerfile::dockerignore::Matcher>,
) -> std::io::Result<Listing> {
    let names: Vec<String> = tree
        .list(dir)?
        .into_iter()
        .filter(|name| !excludes.is_some_and(|x| x.is_excluded(&tree::join(rel, name))))
        .collect();
    let nodes = tree.lstat_children(dir, &names)?;
    Ok(names.into_iter().zip(nodes).collect())
}

fn put_in_walk_order(dir: &str, rel: &str, listings: &mut HashMap<String, Listing>, out: &mut Vec<Item>) {
    let Some(listing) = listings.remove(dir) else { return };
    for (name, node) in listing {
        let Some(node) = node else { continue };
        if node.kind == NodeKind::Socket {
            continue;
        }
        let (src, r) = (tree::join(dir, &name), tree::join(rel, &name));
        let is_dir = node.is_dir();
        out.push(Item {
            rel: r.clone(),
            node,
            single_file: false,
        });
        if is_dir {
            put_in_walk_order(&src, &r, listings, out);
        }
    }
}

/// Per item, (path, hash of its part of the key).
type ItemHashes = Vec<(String, [u8; 32])>;

fn content_key(
    op: &CopyOp,
    items: &[Item],
    inline: &[(String, Vec<u8>)],
    stat_cache: Option<&StatCache>,
) -> std::io::Result<([u8; 32], ItemHashes)> {
    let mut h = Sha256::new();
    let mut per_item = Vec::with_capacity(items.len());
    h.update(serde_json::to_vec(op).expect("plans serialise"));
    // Hash context files in parallel: on a cold cache this is the only content read before
    // the layer is written.
    let hashes: Vec<Option<[u8; 32]>> = match stat_cache {
        Some(sc) => parallel_hashes(items, sc)?,
        None => vec![None; items.len()],
    };
    // One buffer for every item's part (10,000 items in a large context), same bytes as a
    // fresh string each.
    let mut part: Vec<u8> = Vec::with_capacity(256);
    for (item, fh) in items.iter().zip(hashes) {
        use std::io::Write as _;
        let n = &item.node;
        part.clear();
        write!(
            part,
            "{}\0{:?}\0{:o}\0{}\0{}\0{}\0",
            item.rel, n.kind, n.mode, n.uid, n.gid, n.size
        )?;
        if stat_cache.is_none() {
            write!(part, "{}\0", n.mtime)?;
        }
        if let Some(fh) = fh {
            part.extend_from_slice(&fh);
        }
        h.update(&part);
        per_item.push((item.rel.clone(), Sha256::digest(&part).into()));
    }
    for (name, data) in inline {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(data);
    }
    Ok((h.finalize().into(), per_item))
}

fn parallel_hashes(items: &[Item], sc: &StatCache) -> std::io::Result<Vec<Option<[u8; 32]>>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(8);
    kiln_oci::parallel::try_map_ordered(items, workers, |_, item| {
        if item.node.kind == NodeKind::File {
            sc.hash(&item.node).map(Some)
        } else {
            Ok(None)
        }
    })
}

/// How ownership is assigned to what a COPY writes.
#[derive(Debug, Clone, Copy)]
pub struct Ownership {
    /// `--chown` resolved to ids, if given.
    pub chown: Option<(u32, u32)>,
    /// Keep the source's owner (stage and image sources) instead of root (context).
    pub preserve: bool,
}

/// Context files get SOURCE_DATE_EPOCH as mtime, so the digest never depends on checkout times.
pub struct Materialize<'a> {
    /// The rootfs the files land in.
    pub target: &'a dyn Tree,
    /// Ownership rule.
    pub owner: Ownership,
    /// mtime for context files and created directories.
    pub source_date_epoch: i64,
    /// True when copying from the context.
    pub from_context: bool,
    /// Where ADD extracts archives (kept alive by the caller until the layer is written).
    pub scratch_dir: &'a std::path::Path,
    /// mtime of the files of an `ADD URL` (the server's `Last-Modified`), instead of
    /// SOURCE_DATE_EPOCH.
    pub file_mtime: Option<i64>,
}

/// Resolves destinations against the rootfs and returns sorted layer entries.
pub fn materialize(op: &CopyOp, c: &Collected, m: &Materialize<'_>) -> Result<BTreeMap<String, LayerEntry>, StepError> {
    let io = |e: std::io::Error| StepError::new(format!("copying: {e}"), "check the destination path");
    let dest_rel = tree::clean_rel(&op.dest);
    let dest_real = tree::resolve(m.target, &dest_rel, true).map_err(io)?;
    let dest_exists_dir = m.target.lstat(&dest_real).map_err(io)?.is_some_and(|n| n.is_dir());
    let only_one_file = c.items.len() + c.inline.len() == 1 && (c.inline.len() == 1 || c.items[0].single_file);
    let dest_is_dir = op.dest.ends_with('/') || dest_exists_dir || !only_one_file;
    let mut out: BTreeMap<String, LayerEntry> = BTreeMap::new();
    let mut parent_cache: HashMap<String, String> = HashMap::new();
    // Where a relative item path lands, with symlinks in existing parent dirs followed.
    let mut place = |rel: &str| -> std::io::Result<String> {
        if !dest_is_dir {
            let parent_rel = dest_rel.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            let name = dest_rel.rsplit('/').next().unwrap_or(&dest_rel);
            let parent = tree::resolve(m.target, parent_rel, true)?;
            return Ok(tree::join(&parent, name));
        }
        let full = tree::join(&dest_real, rel);
        let (parent, name) = match full.rsplit_once('/') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), full.clone()),
        };
        let parent_real = match parent_cache.get(&parent) {
            Some(p) => p.clone(),
            None => {
                let p = tree::resolve(m.target, &parent, true)?;
                parent_cache.insert(parent.clone(), p.clone());
                p
            }
        };
        Ok(tree::join(&parent_real, &name))
    };
    let mut links: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    for item in &c.items {
        if op.extract_archives && item.node.kind == NodeKind::File && is_archive(&item.node.real).map_err(io)? {
            let dir = m.scratch_dir.join(format!("add-{}", out.len()));
            extract_archive(&item.node.real, &dir).map_err(|e| {
                StepError::new(
                    format!("extracting {}: {e}", item.rel),
                    "ADD extracts tar archives, plain or compressed with gzip, bzip2, xz or zstd",
                )
            })?;
            let t = tree::ContextTree::new(dir, None);
            // The archive's own root entry ("./") gives the destination directory its owner
            // and mode, as untarring onto it does in BuildKit.
            if let Some((mode, uid, gid, mtime)) = archive_root_entry(&item.node.real).map_err(io)? {
                let path = place("").map_err(io)?;
                if let (false, Some(mut root)) = (path.is_empty(), t.lstat("").map_err(io)?) {
                    (root.mode, root.uid, root.gid, root.mtime) = (mode, uid, gid, mtime);
                    add_entry(&mut out, &mut links, path, &root, op, m, false);
                }
            }
            let mut sub = Vec::new();
            walk(&t, "", "", &mut sub, None).map_err(io)?;
            for s in sub {
                let path = place(&s.rel).map_err(io)?;
                add_entry(&mut out, &mut links, path, &s.node, op, m, false);
            }
            continue;
        }
        let rel = if dest_is_dir { item.rel.clone() } else { String::new() };
        let path = place(&rel).map_err(io)?;
        if path.is_empty() {
            continue; // copying a directory onto the root: only its contents matter
        }
        add_entry(&mut out, &mut links, path, &item.node, op, m, m.from_context);
    }
    for (name, data) in &c.inline {
        let rel = if dest_is_dir { name.clone() } else { String::new() };
        let path = place(&rel).map_err(io)?;
        let mut e = LayerEntry::file_bytes(path.clone(), data.clone(), op.chmod.unwrap_or(0o644));
        let (uid, gid) = m.owner.chown.unwrap_or((0, 0));
        (e.uid, e.gid, e.mtime) = (uid as u64, gid as u64, m.source_date_epoch);
        out.insert(path, e);
    }
    // Hard links: the smallest path carries the content, so it precedes its links in the tar.
    for paths in links.values_mut() {
        if paths.len() < 2 {
            continue;
        }
        paths.sort();
        let first = paths[0].clone();
        for p in &paths[1..] {
            if let Some(e) = out.get_mut(p) {
                e.kind = EntryKind::Hardlink(first.clone());
            }
        }
    }
    // Parent directories that do not exist yet are created, owned like the copied files.
    let mut missing = Vec::new();
    for path in out.keys() {
        let mut p = path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if out.contains_key(parent) || missing.iter().any(|x: &String| x == parent) {
                break;
            }
            if m.target.lstat(parent).map_err(io)?.is_none() {
                missing.push(parent.to_string());
            }
            p = parent;
        }
    }
    for dir in missing {
        let mut e = LayerEntry::dir(dir.clone(), 0o755);
        let (uid, gid) = m.owner.chown.unwrap_or((0, 0));
        (e.uid, e.gid, e.mtime) = (uid as u64, gid as u64, m.source_date_epoch);
        out.insert(dir, e);
    }
    Ok(out)
}

fn add_entry(
    out: &mut BTreeMap<String, LayerEntry>,
    links: &mut HashMap<(u64, u64), Vec<String>>,
    path: String,
    n: &Node,
    op: &CopyOp,
    m: &Materialize<'_>,
    from_context: bool,
) {
    let kind = match &n.kind {
        NodeKind::Dir => EntryKind::Dir,
        NodeKind::File => EntryKind::File {
            source: FileSource::Path(n.real.clone()),
            size: n.size,
        },
        NodeKind::Symlink(t) => EntryKind::Symlink(t.clone()),
        NodeKind::CharDevice(a, b) => EntryKind::CharDevice(*a, *b),
        NodeKind::BlockDevice(a, b) => EntryKind::BlockDevice(*a, *b),
        NodeKind::Fifo => EntryKind::Fifo,
        NodeKind::Socket => return,
    };
    if n.kind == NodeKind::File && n.nlink > 1 {
        links.entry(n.dev_ino).or_default().push(path.clone());
    }
    // Entries that do not come straight from the context (ADD's extracted archives, as in
    // BuildKit) keep their owners unless --chown says otherwise.
    let (uid, gid) = match (m.owner.chown, m.owner.preserve || !from_context) {
        (Some(ids), _) => ids,
        (None, true) => (n.uid, n.gid),
        (None, false) => (0, 0),
    };
    let mode = match (&n.kind, op.chmod) {
        (NodeKind::Symlink(_), _) => 0o777,
        (_, Some(c)) => c,
        (_, None) => n.mode,
    };
    let mtime = match (from_context, m.file_mtime) {
        (true, Some(t)) if n.kind == NodeKind::File => t,
        (true, _) => m.source_date_epoch,
        (false, _) => n.mtime,
    };
    out.insert(
        path.clone(),
        LayerEntry {
            path,
            kind,
            mode,
            uid: uid as u64,
            gid: gid as u64,
            mtime,
            xattrs: vec![],
        },
    );
}

/// Recognises the archives ADD extracts, as BuildKit does: the file, decompressed if it is
/// gzip, bzip2, xz or zstd, starts with a valid tar header. Anything else (a `.gz` of plain text, say)
/// is copied as it is.
fn is_archive(path: &std::path::Path) -> std::io::Result<bool> {
    fn read_block(r: &mut dyn Read) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 512];
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Not decompressible after all: not an archive.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok(vec![]),
                Err(e) => return Err(e),
            }
        }
        buf.truncate(n);
        Ok(buf)
    }
    let mut f = std::fs::File::open(path)?;
    let head = read_block(&mut f)?;
    let compressed = [&GZIP[..], &ZSTD[..], &BZIP2[..], &XZ[..]];
    let block = if compressed.iter().any(|m| head.starts_with(m)) {
        match open_archive(path) {
            Ok(mut r) => read_block(&mut r)?,
            Err(_) => return Ok(false),
        }
    } else {
        head
    };
    Ok(tar_header_ok(&block))
}

const GZIP: [u8; 2] = [0x1f, 0x8b];
const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BZIP2: [u8; 3] = *b"BZh";
const XZ: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

/// An archive ADD extracts, decompressed: bzip2 and xz here (as BuildKit's `archive`
/// package does), gzip, zstd or plain tar through kiln-oci's layer decoder.
fn open_archive(path: &std::path::Path) -> std::io::Result<Box<dyn Read>> {
    let mut head = [0u8; 6];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    let f = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(path)?);
    if head[..n].starts_with(&BZIP2) {
        Ok(Box::new(bzip2::read::MultiBzDecoder::new(f)))
    } else if head[..n].starts_with(&XZ) {
        let stream = xz2::stream::Stream::new_stream_decoder(u64::MAX, xz2::stream::CONCATENATED)?;
        Ok(Box::new(xz2::read::XzDecoder::new_stream(f, stream)))
    } else {
        kiln_oci::decompress::open_layer_stream(f)
    }
}

/// Is this a tar header block with a correct checksum (what Go's `tar.Reader.Next` needs)?
fn tar_header_ok(b: &[u8]) -> bool {
    if b.len() < 512 {
        return false;
    }
    let field = String::from_utf8_lossy(&b[148..156]);
    let Ok(stored) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8) else {
        return false;
    };
    let sum: u32 = b[..512]
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(c)
            }
        })
        .sum();
    sum == stored
}

/// Mode, uid, gid and mtime of an archive's first entry when it is the archive's root
/// directory (`./`), as `tar -C dir .` writes it.
fn archive_root_entry(path: &std::path::Path) -> std::io::Result<Option<(u32, u32, u32, i64)>> {
    let mut archive = tar::Archive::new(open_archive(path)?);
    let Some(first) = archive.entries()?.next() else {
        return Ok(None);
    };
    let first = first?;
    let h = first.header();
    let name = first.path_bytes();
    let name = name.strip_prefix(b"./").unwrap_or(&name);
    let is_root = matches!(name, b"" | b"." | b"/") && h.entry_type() == tar::EntryType::Directory;
    Ok(is_root.then(|| {
        (
            h.mode().unwrap_or(0o755) & 0o7777,
            h.uid().unwrap_or(0) as u32,
            h.gid().unwrap_or(0) as u32,
            h.mtime().unwrap_or(0) as i64,
        )
    }))
}

fn extract_archive(path: &std::path::Path, dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let stream = open_archive(path).map_err(|e| e.to_string())?;
    let opts = kiln_oci::unpack::UnpackOptions::default();
    kiln_oci::unpack::unpack_layer(stream, dir, &opts).map_err(|e| e.to_string())?;
    Ok(())
}

/// Reads /etc/passwd and /etc/group of a rootfs to turn `user[:group]` into ids, as Docker
/// does: a user without a group uses the user's primary group (or the same number).
pub fn resolve_owner(spec: &str, rootfs: &dyn Tree) -> Result<(u32, u32), StepError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |name: &str| -> String {
        tree::resolve(rootfs, name, true)
            .ok()
            .and_then(|p| rootfs.lstat(&p).ok().flatten())
            .filter(|n| n.kind == NodeKind::File)
            .and_then(|n| std::fs::read_to_string(n.real).ok())
            .unwrap_or_default()
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => {
            let passwd = read("etc/passwd");
            let line = passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 4 && f[0] == user);
            match line {
                Some(f) => (
                    f[2].parse().map_err(|_| {
                        StepError::new(
                            format!("bad uid for user {user:?} in /etc/passwd"),
                            "fix the image's /etc/passwd",
                        )
                    })?,
                    f[3].parse::<u32>().ok(),
                ),
                None => {
                    return Err(StepError::new(
                        format!("unable to find user {user:?} in the image's /etc/passwd"),
                        "use a numeric uid, or create the user in an earlier step",
                    ));
                }
            }
        }
    };
    let gid = match group {
        None => primary_gid.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let groups = read("etc/group");
                groups
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        StepError::new(
                            format!("unable to find group {g:?} in the image's /etc/group"),
                            "use a numeric gid, or create the group first",
                        )
                    })?
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_is_depth_first_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["a/b", "a/c/d", "e", "f"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        for f in ["a/b/x", "a/b/y", "a/c/d/z", "a/w", "e/v", "top", "f/skip.tmp"] {
            std::fs::write(r.join(f), f).unwrap();
        }
        let t = crate::tree::ContextTree::new(r.to_path_buf(), None);
        let excludes = kiln_dockerfile::dockerignore::Matcher::parse("**/*.tmp").unwrap();
        let mut out = vec![];
        walk(&t, "", "dst", &mut out, Some(&excludes)).unwrap();
        let rels: Vec<&str> = out.iter().map(|i| i.rel.as_str()).collect();
        assert_eq!(
            rels,
            [
                "dst/a",
                "dst/a/b",
                "dst/a/b/x",
                "dst/a/b/y",
                "dst/a/c",
                "dst/a/c/d",
                "dst/a/c/d/z",
                "dst/a/w",
                "dst/e",
                "dst/e/v",
                "dst/f",
                "dst/top"
            ]
        );
    }

    #[test]
    fn go_match_semantics() {
        assert!(match_component("*.txt", "a.txt"));
        assert!(!match_component("*.txt", "a.txt.bak"));
        assert!(match_component("f?le", "file"));
        assert!(match_component("[a-c]x", "bx"));
        assert!(!match_component("[^a-c]x", "bx"));
        assert!(match_component("[!2]x", "2x"));
        assert!(!match_component("[!2]x", "1x"));
        assert!(match_component("\\*", "*"));
        assert!(!match_component("[abc", "a"));
    }
}
