//! `kiln harden`: the settings that run an image the way `kiln run` does, for Kubernetes (a
//! Deployment) and Compose, derived from the image itself: its USER resolved through its own
//! /etc/passwd and /etc/group, its VOLUMEs and exposed ports, its digest, and the directories
//! `kiln run --discover-writes` found.

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::tmpfs_targets;
use crate::error::RuntimeError;
use crate::identity;
use crate::image::Prepared;

/// What `kiln harden` derives (its `--format json`, and the `kiln-runtime` predicate).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hardening {
    /// The workload name.
    pub name: String,
    /// The image pinned by digest.
    pub image: String,
    /// uid the image runs as.
    pub run_as_user: u32,
    /// gid the image runs as.
    pub run_as_group: u32,
    /// True when the image would run as root (then only warnings, never runAsUser 0).
    pub runs_as_root: bool,
    /// Always true: the rootfs is read-only.
    pub read_only_root_filesystem: bool,
    /// Always false.
    pub allow_privilege_escalation: bool,
    /// Always `["ALL"]`.
    pub cap_drop: Vec<String>,
    /// `NET_BIND_SERVICE` when a port below 1024 (TCP or UDP) is exposed.
    pub cap_add: Vec<String>,
    /// Always `RuntimeDefault`.
    pub seccomp_profile: String,
    /// Writable directories: /tmp, every VOLUME, every discovered write.
    pub writable_paths: Vec<String>,
    /// Exposed TCP ports.
    pub ports: Vec<u16>,
    /// Exposed UDP ports (`EXPOSE 53/udp`); left out of the JSON when there are none, so
    /// the predicate of a TCP-only image is what it always was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub udp_ports: Vec<u16>,
    /// Problems a person should fix in the image.
    pub warnings: Vec<String>,
}

/// A DNS-1123 label from `s` (lowercase letters, digits and '-', at most 63).
pub fn dns_label(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let t: String = out.trim_matches('-').chars().take(63).collect();
    let t = t.trim_end_matches('-').to_string();
    if t.is_empty() { "app".into() } else { t }
}

/// The workload name for `reference`: its repository's last path component.
pub fn default_name(reference: &str) -> String {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let repo = last.split(':').next().unwrap_or(last);
    dns_label(repo)
}

/// The image reference pinned to `digest` (any tag kept for readers, the digest wins).
pub fn pinned(reference: &str, digest: &str) -> String {
    let base = reference.split('@').next().unwrap_or(reference);
    let base = base
        .strip_prefix("oci:")
        .or_else(|| base.strip_prefix("oci-archive:"))
        .or_else(|| base.strip_prefix("docker-archive:"))
        .unwrap_or(base);
    format!("{base}@{digest}")
}

/// Derives the settings from a prepared image and the writable directories discovered.
pub fn derive(img: &Prepared, name: Option<&str>, writes: &[String]) -> Result<Hardening, RuntimeError> {
    let id = identity::resolve(&img.view, img.config.config.user.as_deref(), None)?;
    let mut warnings = Vec::new();
    let root = id.uid == 0;
    if root {
        warnings.push(format!(
            "image {} runs as root ({}): runAsNonRoot makes Kubernetes refuse it; add a non-root USER to the image",
            img.reference,
            if id.spec.is_empty() {
                "no USER".to_string()
            } else {
                format!("USER {}", id.spec)
            }
        ));
    }
    let exposed = |proto: &str| -> Vec<u16> {
        img.config
            .config
            .exposed_ports
            .iter()
            .flat_map(|m| m.keys())
            .filter_map(|p| {
                let (port, p_proto) = p.split_once('/').unwrap_or((p, "tcp"));
                (p_proto == proto).then(|| port.parse().ok()).flatten()
            })
            .collect()
    };
    let (ports, udp_ports) = (exposed("tcp"), exposed("udp"));
    let cap_add = if ports.iter().chain(&udp_ports).any(|p| *p < 1024) {
        vec!["NET_BIND_SERVICE".to_string()]
    } else {
        vec![]
    };
    Ok(Hardening {
        name: name.map(dns_label).unwrap_or_else(|| default_name(&img.reference)),
        image: pinned(&img.reference, &img.manifest.digest.to_string()),
        run_as_user: id.uid,
        run_as_group: id.gid,
        runs_as_root: root,
        read_only_root_filesystem: true,
        allow_privilege_escalation: false,
        cap_drop: vec!["ALL".into()],
        cap_add,
        seccomp_profile: "RuntimeDefault".into(),
        writable_paths: tmpfs_targets(&img.config, writes),
        ports,
        udp_ports,
        warnings,
    })
}

fn volume_names(paths: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in paths {
        let base = dns_label(p);
        let mut n = base.clone();
        let mut i = 2;
        while names.contains(&n) {
            n = format!("{base}-{i}");
            i += 1;
        }
        names.push(n);
    }
    names
}

/// A Kubernetes Deployment (apps/v1) with the pod and container securityContext.
pub fn kubernetes(h: &Hardening) -> Value {
    let names = volume_names(&h.writable_paths);
    let mut pod_sc = json!({"runAsNonRoot": true, "seccompProfile": {"type": h.seccomp_profile}});
    let mut ctr_sc = json!({
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "runAsNonRoot": true,
        "capabilities": {"drop": h.cap_drop},
        "seccompProfile": {"type": h.seccomp_profile},
    });
    if !h.cap_add.is_empty() {
        ctr_sc["capabilities"]["add"] = json!(h.cap_add);
        // Kubernetes sets no ambient capabilities, so a non-root program loses an added
        // NET_BIND_SERVICE at exec; the namespaced, safe sysctl is what lets it listen
        // below 1024 (Docker and Podman set it in every container).
        if h.cap_add.iter().any(|c| c == "NET_BIND_SERVICE") {
            pod_sc["sysctls"] = json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]);
        }
    }
    if !h.runs_as_root {
        for sc in [&mut pod_sc, &mut ctr_sc] {
            sc["runAsUser"] = json!(h.run_as_user);
            sc["runAsGroup"] = json!(h.run_as_group);
        }
    }
    let mounts: Vec<Value> = h
        .writable_paths
        .iter()
        .zip(&names)
        .map(|(p, n)| json!({"name": n, "mountPath": p}))
        .collect();
    let volumes: Vec<Value> = names.iter().map(|n| json!({"name": n, "emptyDir": {}})).collect();
    let mut container = json!({
        "name": h.name,
        "image": h.image,
        "securityContext": ctr_sc,
        "volumeMounts": mounts,
    });
    let tcp = h.ports.iter().map(|p| json!({"containerPort": p, "protocol": "TCP"}));
    let udp = h
        .udp_ports
        .iter()
        .map(|p| json!({"containerPort": p, "protocol": "UDP"}));
    let ports: Vec<Value> = tcp.chain(udp).collect();
    if !ports.is_empty() {
        container["ports"] = json!(ports);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": h.name, "labels": {"app": h.name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": h.name}},
            "template": {
                "metadata": {"labels": {"app": h.name}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": pod_sc,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    })
}

/// A Compose file with one service.
pub fn compose(h: &Hardening) -> Value {
    let mut svc = json!({
        "image": h.image,
        "read_only": true,
        "cap_drop": h.cap_drop,
        "security_opt": ["no-new-privileges:true"],
        "tmpfs": h.writable_paths,
    });
    if !h.runs_as_root {
        svc["user"] = json!(format!("{}:{}", h.run_as_user, h.run_as_group));
    }
    if !h.cap_add.is_empty() {
        svc["cap_add"] = json!(h.cap_add);
    }
    let tcp = h.ports.iter().map(|p| json!(format!("{p}:{p}")));
    let udp = h.udp_ports.iter().map(|p| json!(format!("{p}:{p}/udp")));
    let ports: Vec<Value> = tcp.chain(udp).collect();
    if !ports.is_empty() {
        svc["ports"] = json!(ports);
    }
    json!({"services": {h.name.clone(): svc}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_pins() {
        assert_eq!(default_name("localhost:5000/team/My_App:1.0"), "my-app");
        assert_eq!(pinned("hello:latest", "sha256:ab"), "hello:latest@sha256:ab");
        assert_eq!(volume_names(&["/tmp".into(), "/tmp/".into()]), vec!["tmp", "tmp-2"]);
        assert_eq!(dns_label("/home/app/.cache"), "home-app-cache");
    }
}
