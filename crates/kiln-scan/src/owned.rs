//! Files a Debian package installed: the distribution's bytes, the same in every image and
//! on every mirror, so nothing in them is the image's secret. libgnutls30 compiles its FIPS
//! self-test private keys into `libgnutls.so`, package documentation carries example
//! credentials: reporting them would bury the image's own leaks.
//!
//! A file counts as the package's when the dpkg database written by the same layer lists it
//! (`/var/lib/dpkg/info/*.list`, or distroless's `status.d/*.md5sums`): a package installed
//! in a layer writes its files and its list together, so a file a later layer writes over, or
//! one that was there before the package, is not the package's. Conffiles
//! (`info/*.conffiles`) are excluded: they are the configuration users edit, where a real
//! password ends up.

use std::collections::HashSet;
use std::io;

use kiln_oci::layer::absolute_entry_path;
use kiln_oci::walk::{Content, Kind, Meta, Visitor};

/// dpkg database files larger than this are not read.
const MAX_LIST: u64 = 16 << 20;

/// What one layer's dpkg database says the packages installed in that layer own.
#[derive(Debug, Default)]
pub struct Owned {
    paths: HashSet<String>,
    conffiles: HashSet<String>,
}

impl Owned {
    /// True when a package installed in this layer owns `path` and it is not a conffile.
    /// With merged `/usr`, a package that lists `/lib/x` owns `/usr/lib/x`.
    pub fn owns(&self, path: &str) -> bool {
        let listed = |p: &str| self.paths.contains(p) && !self.conffiles.contains(p);
        listed(path)
            || path.strip_prefix("/usr").is_some_and(|rest| {
                ["/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/"]
                    .iter()
                    .any(|d| rest.starts_with(d))
                    && listed(rest)
            })
    }

    fn add_lines(set: &mut HashSet<String>, text: &[u8], path_of: impl Fn(&str) -> Option<&str>) {
        for line in String::from_utf8_lossy(text).lines() {
            if let Some(p) = path_of(line.trim_end()).filter(|p| !p.is_empty()) {
                set.insert(absolute_entry_path(p));
            }
        }
    }
}

impl Visitor for Owned {
    fn entry(&mut self, path: &str, meta: &Meta, content: &mut Content<'_>) -> io::Result<()> {
        if meta.kind != Kind::File {
            return Ok(());
        }
        if let Some(name) = path.strip_prefix("/var/lib/dpkg/info/") {
            if name.ends_with(".list") {
                if let Some(text) = content.whole(MAX_LIST)? {
                    Owned::add_lines(&mut self.paths, text, |l| Some(l));
                }
            } else if name.ends_with(".conffiles")
                && let Some(text) = content.whole(MAX_LIST)?
            {
                // `remove-on-upgrade` and `obsolete` flags may follow the path.
                Owned::add_lines(&mut self.conffiles, text, |l| l.split_whitespace().next());
            }
        } else if path.starts_with("/var/lib/dpkg/status.d/")
            && path.ends_with(".md5sums")
            && let Some(text) = content.whole(MAX_LIST)?
        {
            // `MD5  path/relative/to/root`.
            Owned::add_lines(&mut self.paths, text, |l| l.split_once("  ").map(|(_, p)| p));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(o: &mut Owned, path: &str, text: &str) {
        let meta = Meta {
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: text.len() as u64,
            link: None,
        };
        let mut src = text.as_bytes();
        let mut kept = Vec::new();
        o.entry(path, &meta, &mut Content::new(&mut src, meta.size, &mut kept))
            .unwrap();
    }

    #[test]
    fn lists_own_files_but_not_conffiles() {
        let mut o = Owned::default();
        visit(
            &mut o,
            "/var/lib/dpkg/info/libgnutls30:amd64.list",
            "/.\n/usr\n/usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3\n/lib/x86_64-linux-gnu/libold.so.1\n/etc/app.conf\n",
        );
        visit(
            &mut o,
            "/var/lib/dpkg/info/libgnutls30:amd64.conffiles",
            "/etc/app.conf\n",
        );
        visit(
            &mut o,
            "/var/lib/dpkg/status.d/base.md5sums",
            "0123456789abcdef0123456789abcdef  usr/share/doc/base/README\n",
        );
        assert!(o.owns("/usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3"));
        assert!(o.owns("/usr/lib/x86_64-linux-gnu/libold.so.1"), "merged /usr");
        assert!(o.owns("/usr/share/doc/base/README"));
        assert!(!o.owns("/etc/app.conf"), "a conffile is the user's to edit");
        assert!(!o.owns("/usr/lib/x86_64-linux-gnu/other.so"));
        assert!(!o.owns("/usr/share/lib/x86_64-linux-gnu/libold.so.1"));
    }
}
