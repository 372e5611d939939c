//! A rule's `pod:` section checked against a pod spec: Kubernetes' Pod Security Standards
//! (`baseline`, `restricted`; `privileged` checks nothing) and `read_only_root`.
//!
//! Restricted, as the Kubernetes documentation defines it: no privileged containers, no
//! host namespaces, no hostPath (only the restricted volume types), no host ports,
//! `allowPrivilegeEscalation: false`, `runAsNonRoot: true` (pod or every container) and no
//! `runAsUser: 0`, seccomp `RuntimeDefault` or `Localhost` (pod or every container), and
//! capabilities dropping `ALL` with at most `NET_BIND_SERVICE` added.
//!
//! Baseline, as the same documentation defines it: no host namespaces, no privileged
//! containers, only Docker's default capabilities added, no hostPath, no host ports, and
//! (in [`contexts`]) no Windows HostProcess, no `Unconfined` seccomp or AppArmor, only
//! the container SELinux types, the default /proc mount and the safe sysctls.

mod contexts;

use kiln_policy::PodRule;
use serde_json::Value;

use crate::pods::{Container, Pod};

/// One failed pod setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The container (`None`: the pod itself).
    pub container: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The setting that fixes it.
    pub fix: String,
}

/// Capabilities the baseline profile allows a container to add.
const BASELINE_CAPS: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Volume types the restricted profile allows.
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

struct Out {
    found: Vec<Finding>,
}

impl Out {
    fn pod(&mut self, message: impl Into<String>, fix: impl Into<String>) {
        self.found.push(Finding {
            container: None,
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn container(&mut self, c: &Container, message: impl Into<String>, fix: impl Into<String>) {
        self.found.push(Finding {
            container: Some(c.name.clone()),
            message: message.into(),
            fix: fix.into(),
        });
    }
}

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool) == Some(true)
}

/// Checks `pod` against `rule`, for the containers `applies` selects (the containers whose
/// images the rule matches); pod-level settings are checked when any container is selected.
pub fn check(rule: &PodRule, pod: &Pod, applies: &dyn Fn(&Container) -> bool) -> Vec<Finding> {
    let mut out = Out { found: vec![] };
    let selected: Vec<&Container> = pod.containers.iter().filter(|c| applies(c)).collect();
    if selected.is_empty() {
        return out.found;
    }
    let level = match rule.profile.as_deref() {
        Some("restricted") => 2,
        Some("baseline") => 1,
        _ => 0,
    };
    if level >= 1 {
        baseline(pod, &selected, &mut out);
    }
    if level >= 2 {
        restricted(pod, &selected, &mut out);
    }
    if rule.read_only_root == Some(true) {
        for c in &selected {
            if !is_true(c.spec.pointer("/securityContext/readOnlyRootFilesystem")) {
                out.container(
                    c,
                    "the root filesystem is writable",
                    "securityContext.readOnlyRootFilesystem: true",
                );
            }
        }
    }
    out.found
}

fn baseline(pod: &Pod, selected: &[&Container], out: &mut Out) {
    contexts::check(pod, selected, out);
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(pod.spec.get(field)) {
            out.pod(format!("{field} is true"), format!("remove {field} or set it to false"));
        }
    }
    for v in pod.spec.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        if v.get("hostPath").is_some() {
            let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
            out.pod(
                format!("volume {name:?} is a hostPath"),
                "use an emptyDir, configMap, secret or persistentVolumeClaim volume",
            );
        }
    }
    for c in selected {
        if is_true(c.spec.pointer("/securityContext/privileged")) {
            out.container(c, "it is privileged", "securityContext.privileged: false");
        }
        let ports = c.spec.get("ports").and_then(Value::as_array);
        if ports
            .into_iter()
            .flatten()
            .any(|p| p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) != 0)
        {
            out.container(c, "it uses a hostPort", "remove hostPort from its ports");
        }
        let added = c
            .spec
            .pointer("/securityContext/capabilities/add")
            .and_then(Value::as_array);
        for cap in added.into_iter().flatten().filter_map(Value::as_str) {
            if !BASELINE_CAPS.contains(&cap.trim_start_matches("CAP_")) {
                out.container(
                    c,
                    format!("it adds capability {cap}"),
                    "remove it from securityContext.capabilities.add",
                );
            }
        }
    }
}

fn restricted(pod: &Pod, selected: &[&Container], out: &mut Out) {
    for v in pod.spec.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        let kinds = v.as_object().into_iter().flatten().map(|(k, _)| k.as_str());
        for k in kinds.filter(|k| *k != "name" && *k != "hostPath") {
            if !RESTRICTED_VOLUMES.contains(&k) {
                out.pod(
                    format!("volume {name:?} is of type {k}, which the restricted profile does not allow"),
                    "use configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected or secret",
                );
            }
        }
    }
    let pod_sc = pod.spec.get("securityContext");
    let pod_non_root = is_true(pod_sc.and_then(|s| s.get("runAsNonRoot")));
    let pod_seccomp = pod_sc
        .and_then(|s| s.pointer("/seccompProfile/type"))
        .and_then(Value::as_str);
    let root_user = |sc: Option<&Value>| sc.and_then(|s| s.get("runAsUser")).and_then(Value::as_i64) == Some(0);
    if root_user(pod_sc) {
        out.pod("runAsUser is 0 (root)", "securityContext.runAsUser: a non-zero uid");
    }
    for c in selected {
        let sc = c.spec.get("securityContext");
        let get = |k: &str| sc.and_then(|s| s.get(k));
        if get("allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false) {
            out.container(
                c,
                "allowPrivilegeEscalation is not false",
                "securityContext.allowPrivilegeEscalation: false",
            );
        }
        let non_root = match get("runAsNonRoot").and_then(Value::as_bool) {
            Some(v) => v,
            None => pod_non_root,
        };
        if !non_root {
            out.container(
                c,
                "runAsNonRoot is not true",
                "securityContext.runAsNonRoot: true (pod or container)",
            );
        }
        if root_user(sc) {
            out.container(c, "runAsUser is 0 (root)", "securityContext.runAsUser: a non-zero uid");
        }
        let seccomp = sc
            .and_then(|s| s.pointer("/seccompProfile/type"))
            .and_then(Value::as_str)
            .or(pod_seccomp);
        // A container's own `Unconfined` is named by the baseline checks already.
        let own_unconfined = sc.and_then(|s| s.pointer("/seccompProfile/type")) == Some(&Value::from("Unconfined"));
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) && !own_unconfined {
            out.container(
                c,
                format!("seccomp profile is {}", seccomp.unwrap_or("not set")),
                "securityContext.seccompProfile.type: RuntimeDefault (pod or container)",
            );
        }
        let caps = |k: &str| -> Vec<&str> {
            sc.and_then(|s| s.pointer(&format!("/capabilities/{k}")))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect()
        };
        if !caps("drop").contains(&"ALL") {
            out.container(
                c,
                "capabilities are not all dropped",
                "securityContext.capabilities.drop: [ALL]",
            );
        }
        for cap in caps("add").into_iter().filter(|c| *c != "NET_BIND_SERVICE") {
            if BASELINE_CAPS.contains(&cap) {
                out.container(c, format!("it adds capability {cap}"), "add at most NET_BIND_SERVICE");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn restricted_rule() -> PodRule {
        PodRule {
            profile: Some("restricted".into()),
            read_only_root: Some(true),
        }
    }

    fn hardened() -> Value {
        json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
               "containers": [{"name": "app", "image": "a:1", "securityContext": {
                   "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                   "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]})
    }

    fn findings(spec: Value) -> Vec<String> {
        let obj = json!({ "spec": spec });
        let p = crate::pods::pod("Pod", &obj).unwrap().unwrap();
        check(&restricted_rule(), &p, &|_| true)
            .into_iter()
            .map(|f| format!("{}: {}", f.container.unwrap_or_else(|| "pod".into()), f.message))
            .collect()
    }

    #[test]
    fn a_hardened_pod_passes_and_each_weakening_is_named() {
        assert_eq!(findings(hardened()), Vec::<String>::new());
        let mut s = hardened();
        s["containers"][0]["securityContext"]["privileged"] = json!(true);
        assert_eq!(findings(s), vec!["app: it is privileged"]);
        let mut s = hardened();
        s["hostNetwork"] = json!(true);
        s["volumes"] = json!([{"name": "root", "hostPath": {"path": "/"}}, {"name": "nfs", "nfs": {}}]);
        assert_eq!(
            findings(s),
            vec![
                "pod: hostNetwork is true",
                "pod: volume \"root\" is a hostPath",
                "pod: volume \"nfs\" is of type nfs, which the restricted profile does not allow"
            ]
        );
        let bare = json!({"containers": [{"name": "app", "image": "a:1"}]});
        assert_eq!(
            findings(bare),
            vec![
                "app: allowPrivilegeEscalation is not false",
                "app: runAsNonRoot is not true",
                "app: seccomp profile is not set",
                "app: capabilities are not all dropped",
                "app: the root filesystem is writable"
            ]
        );
        // The container may override the pod: runAsNonRoot false there fails.
        let mut s = hardened();
        s["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
        s["containers"][0]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
        assert_eq!(
            findings(s),
            vec!["app: seccomp profile is Unconfined", "app: runAsNonRoot is not true"]
        );
    }

    /// `kiln harden`'s Deployment, for a non-root image with a low TCP and a UDP port (so
    /// with NET_BIND_SERVICE and the safe sysctl) and for a root image, passes the
    /// restricted profile with `read_only_root`: the settings kiln prints are the settings
    /// kiln admits.
    #[test]
    fn what_kiln_harden_prints_passes_the_restricted_profile() {
        for root in [false, true] {
            let h = kiln_runtime::harden::Hardening {
                name: "app".into(),
                image: "reg/app:1@sha256:ab".into(),
                run_as_user: if root { 0 } else { 1000 },
                run_as_group: if root { 0 } else { 1000 },
                runs_as_root: root,
                read_only_root_filesystem: true,
                allow_privilege_escalation: false,
                cap_drop: vec!["ALL".into()],
                cap_add: vec!["NET_BIND_SERVICE".into()],
                seccomp_profile: "RuntimeDefault".into(),
                writable_paths: vec!["/tmp".into(), "/var/log".into()],
                ports: vec![80],
                udp_ports: vec![53],
                warnings: vec![],
            };
            let deployment = kiln_runtime::harden::kubernetes(&h);
            assert!(
                deployment
                    .pointer("/spec/template/spec/securityContext/sysctls")
                    .is_some()
            );
            let p = crate::pods::pod("Deployment", &deployment).unwrap().unwrap();
            let found: Vec<String> = check(&restricted_rule(), &p, &|_| true)
                .into_iter()
                .map(|f| f.message)
                .collect();
            assert_eq!(found, Vec::<String>::new(), "root image: {root}");
        }
    }

    fn baseline_findings(obj: Value) -> Vec<String> {
        let rule = PodRule {
            profile: Some("baseline".into()),
            read_only_root: None,
        };
        let kind = if obj.pointer("/spec/template").is_some() {
            "Deployment"
        } else {
            "Pod"
        };
        let p = crate::pods::pod(kind, &obj).unwrap().unwrap();
        check(&rule, &p, &|_| true)
            .into_iter()
            .map(|f| format!("{}: {}", f.container.unwrap_or_else(|| "pod".into()), f.message))
            .collect()
    }

    #[test]
    fn baseline_refuses_what_the_pod_security_standards_list_and_allows_the_rest() {
        // The default pod, and every allowed value, pass.
        let allowed = json!({"spec": {
            "securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                                "seLinuxOptions": {"type": "container_t"},
                                "seccompProfile": {"type": "RuntimeDefault"},
                                "appArmorProfile": {"type": "Localhost", "localhostProfile": "k"}},
            "containers": [{"name": "app", "image": "a:1", "securityContext": {
                "procMount": "Default", "capabilities": {"add": ["CHOWN"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}}]}});
        assert_eq!(baseline_findings(allowed), Vec::<String>::new());
        assert_eq!(
            baseline_findings(json!({"spec": {"containers": [{"name": "app", "image": "a:1"}]}})),
            Vec::<String>::new()
        );

        // Each control, at the pod and in a container (of a Deployment's template, whose
        // annotations carry the older AppArmor form).
        let denied = json!({"spec": {"template": {
            "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}},
            "spec": {
                "securityContext": {"sysctls": [{"name": "kernel.core_pattern", "value": "|/x"}],
                                    "seccompProfile": {"type": "Unconfined"},
                                    "windowsOptions": {"hostProcess": true}},
                "containers": [{"name": "app", "image": "a:1", "securityContext": {
                    "procMount": "Unmasked",
                    "appArmorProfile": {"type": "Unconfined"},
                    "seLinuxOptions": {"type": "spc_t", "user": "system_u", "role": "system_r"}}}]}}}});
        assert_eq!(
            baseline_findings(denied),
            vec![
                "pod: it is a Windows HostProcess container",
                "pod: seccomp profile is Unconfined",
                "pod: sysctl \"kernel.core_pattern\" is not in the safe set",
                "app: AppArmor profile is Unconfined",
                "app: SELinux type is spc_t",
                "app: SELinux user is set to system_u",
                "app: SELinux role is set to system_r",
                "app: /proc is mounted Unmasked",
                "app: AppArmor profile annotation is unconfined",
            ]
        );
    }
}
