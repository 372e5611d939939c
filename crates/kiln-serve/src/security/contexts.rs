//! The baseline controls that live in security contexts and annotations rather than in the
//! pod's shape: Windows HostProcess, seccomp `Unconfined`, AppArmor, SELinux, the /proc
//! mount type and sysctls, as the Pod Security Standards (Kubernetes 1.31) list them. Any
//! value outside a control's allowed list fails, so a value this code does not know is
//! refused, never waved through.

use serde_json::Value;

use super::{Out, is_true};
use crate::pods::{Container, Pod};

/// Sysctls the baseline profile allows (Kubernetes' safe set, 1.29 and later).
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// SELinux types the baseline profile allows (besides none).
const SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// What is wrong with one security context (the pod's or a container's), as
/// (message, fix) pairs.
fn context_findings(sc: Option<&Value>) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Some(sc) = sc else { return found };
    let text = |ptr: &str| sc.pointer(ptr).and_then(Value::as_str);
    if is_true(sc.pointer("/windowsOptions/hostProcess")) {
        found.push((
            "it is a Windows HostProcess container".to_string(),
            "securityContext.windowsOptions.hostProcess: false".to_string(),
        ));
    }
    if text("/seccompProfile/type") == Some("Unconfined") {
        found.push((
            "seccomp profile is Unconfined".to_string(),
            "securityContext.seccompProfile.type: RuntimeDefault".to_string(),
        ));
    }
    if let Some(t) = text("/appArmorProfile/type").filter(|t| !matches!(*t, "RuntimeDefault" | "Localhost")) {
        found.push((
            format!("AppArmor profile is {t}"),
            "securityContext.appArmorProfile.type: RuntimeDefault or Localhost".to_string(),
        ));
    }
    if let Some(se) = sc.get("seLinuxOptions") {
        let field = |k: &str| se.get(k).and_then(Value::as_str).unwrap_or_default();
        let t = field("type");
        if !t.is_empty() && !SELINUX_TYPES.contains(&t) {
            found.push((
                format!("SELinux type is {t}"),
                format!("seLinuxOptions.type: one of {}, or none", SELINUX_TYPES.join(", ")),
            ));
        }
        for k in ["user", "role"] {
            if !field(k).is_empty() {
                found.push((
                    format!("SELinux {k} is set to {}", field(k)),
                    format!("remove seLinuxOptions.{k}"),
                ));
            }
        }
    }
    found
}

/// The baseline controls of security contexts and annotations, for the pod and for the
/// `selected` containers.
pub(super) fn check(pod: &Pod, selected: &[&Container], out: &mut Out) {
    for (message, fix) in context_findings(pod.spec.get("securityContext")) {
        out.pod(message, fix.replacen("securityContext.", "spec.securityContext.", 1));
    }
    let sysctls = pod.spec.pointer("/securityContext/sysctls").and_then(Value::as_array);
    for s in sysctls.into_iter().flatten() {
        let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
        if !SAFE_SYSCTLS.contains(&name) {
            out.pod(
                format!("sysctl {name:?} is not in the safe set"),
                format!("remove it, or use one of {}", SAFE_SYSCTLS.join(", ")),
            );
        }
    }
    for c in selected {
        for (message, fix) in context_findings(c.spec.get("securityContext")) {
            out.container(c, message, fix);
        }
        let proc_mount = c.spec.pointer("/securityContext/procMount").and_then(Value::as_str);
        if let Some(m) = proc_mount.filter(|m| *m != "Default") {
            out.container(c, format!("/proc is mounted {m}"), "securityContext.procMount: Default");
        }
        let key = format!("container.apparmor.security.beta.kubernetes.io/{}", c.name);
        let annotation = pod.annotations.and_then(|a| a.get(&key)).and_then(Value::as_str);
        if let Some(v) = annotation.filter(|v| *v != "runtime/default" && !v.starts_with("localhost/")) {
            out.container(
                c,
                format!("AppArmor profile annotation is {v}"),
                format!("{key}: runtime/default (or a localhost/ profile)"),
            );
        }
    }
}
