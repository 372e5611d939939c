//! Who the container's process is: the image's USER (or `--user`), resolved through the
//! image's own /etc/passwd and /etc/group exactly as RUN steps resolve it.

use kiln_build::run::exec;
use kiln_build::tree::Tree;

use crate::error::RuntimeError;

/// A resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The USER spec it came from (`""` when the image sets none).
    pub spec: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary groups (the primary group first).
    pub groups: Vec<u32>,
    /// Home directory from /etc/passwd (`/` when unknown, `/root` for root).
    pub home: String,
}

/// Resolves `flag` (`--user`) or else the image's `USER` against the image's files.
pub fn resolve(view: &dyn Tree, image_user: Option<&str>, flag: Option<&str>) -> Result<Identity, RuntimeError> {
    let spec = flag.or(image_user).unwrap_or("").trim().to_string();
    let lookup = if spec.is_empty() { "root" } else { spec.as_str() };
    let (uid, gid, groups) = match exec::identity(view, lookup) {
        Ok(id) => id,
        Err(_) if spec.is_empty() => (0, 0, vec![0]),
        Err(e) => {
            return Err(RuntimeError::input(
                format!("user {spec:?}: {}", e.message),
                if flag.is_some() {
                    "give --user as a uid[:gid], or a name in the image's /etc/passwd"
                } else {
                    "the image's USER names nobody in its /etc/passwd; pass --user UID[:GID]"
                },
            ));
        }
    };
    let home = exec::passwd_home(view, uid).unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() });
    Ok(Identity {
        spec,
        uid,
        gid,
        groups,
        home,
    })
}

/// `kiln run` refuses to run as root unless `--user` asked for root on purpose.
pub fn refuse_root(id: &Identity, flag: Option<&str>, reference: &str) -> Result<(), RuntimeError> {
    if id.uid != 0 || flag.is_some() {
        return Ok(());
    }
    let why = if id.spec.is_empty() {
        "sets no USER".to_string()
    } else {
        format!("sets USER {}", id.spec)
    };
    Err(RuntimeError::denied(
        format!("image {reference} would run as root: it {why}"),
        "add a non-root USER to the image, or pass --user 0 to run it as root on purpose",
    ))
}
