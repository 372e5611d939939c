//! Finding the pod spec in an admitted object (a Pod or a workload's pod template) and
//! every container image in it, with the JSON Pointer of each `image` field for patches.

use serde_json::Value;

/// Which list a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// `containers`.
    Container,
    /// `initContainers`.
    Init,
    /// `ephemeralContainers`.
    Ephemeral,
}

impl ContainerKind {
    /// The field name in a pod spec.
    pub fn field(self) -> &'static str {
        match self {
            ContainerKind::Container => "containers",
            ContainerKind::Init => "initContainers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        }
    }

    /// How messages name it.
    pub fn noun(self) -> &'static str {
        match self {
            ContainerKind::Container => "container",
            ContainerKind::Init => "init container",
            ContainerKind::Ephemeral => "ephemeral container",
        }
    }
}

/// One container of the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Container<'a> {
    /// Which list.
    pub kind: ContainerKind,
    /// Its name.
    pub name: String,
    /// Its image as written (empty when missing).
    pub image: String,
    /// JSON Pointer of its `image` field in the object.
    pub pointer: String,
    /// The container object.
    pub spec: &'a Value,
}

/// The pod spec of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod<'a> {
    /// The pod spec.
    pub spec: &'a Value,
    /// The pod's annotations (a workload's template's), where AppArmor profiles were set
    /// before `securityContext.appArmorProfile`.
    pub annotations: Option<&'a Value>,
    /// Every container, in the order containers, init containers, ephemeral containers.
    pub containers: Vec<Container<'a>>,
}

/// Where the pod spec sits for each kind this webhook reads; `None` for other kinds.
pub fn spec_pointer(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Pod" => "/spec",
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicationController" => {
            "/spec/template/spec"
        }
        "CronJob" => "/spec/jobTemplate/spec/template/spec",
        _ => return None,
    })
}

/// The pod of `object` of kind `kind`; `Err` says what is missing.
pub fn pod<'a>(kind: &str, object: &'a Value) -> Result<Option<Pod<'a>>, String> {
    let Some(at) = spec_pointer(kind) else {
        return Ok(None);
    };
    let spec = object
        .pointer(at)
        .filter(|s| s.is_object())
        .ok_or_else(|| format!("{kind} has no pod spec at {at}"))?;
    let mut containers = vec![];
    for kind in [ContainerKind::Container, ContainerKind::Init, ContainerKind::Ephemeral] {
        let Some(list) = spec.get(kind.field()) else { continue };
        let list = list
            .as_array()
            .ok_or_else(|| format!("{at}/{} is not a list", kind.field()))?;
        for (i, c) in list.iter().enumerate() {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            containers.push(Container {
                kind,
                name: if name.is_empty() {
                    format!("#{i}")
                } else {
                    name.to_string()
                },
                image: image.to_string(),
                pointer: format!("{at}/{}/{i}/image", kind.field()),
                spec: c,
            });
        }
    }
    // The metadata beside the pod spec: `/metadata` of a Pod, `/spec/template/metadata` of
    // a workload.
    let meta = format!("{}/metadata/annotations", at.strip_suffix("/spec").unwrap_or(at));
    let annotations = object.pointer(&meta).filter(|a| a.is_object());
    Ok(Some(Pod {
        spec,
        annotations,
        containers,
    }))
}

/// The name a message gives the object: `namespace/name`, else its `generateName` prefix.
pub fn object_name(object: &Value, request_name: Option<&str>) -> String {
    let meta = object.get("metadata");
    let s = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or_default();
    match request_name.filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None if !s("name").is_empty() => s("name").to_string(),
        None if !s("generateName").is_empty() => format!("{}*", s("generateName")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_workload_kind_and_every_container_list() {
        let spec = json!({"containers": [{"name": "app", "image": "a:1"}],
                          "initContainers": [{"name": "init", "image": "i:1"}],
                          "ephemeralContainers": [{"name": "debug", "image": "d:1"}]});
        let cases = [
            ("Pod", json!({"spec": spec}), "/spec"),
            (
                "Deployment",
                json!({"spec": {"template": {"spec": spec}}}),
                "/spec/template/spec",
            ),
            (
                "ReplicaSet",
                json!({"spec": {"template": {"spec": spec}}}),
                "/spec/template/spec",
            ),
            (
                "StatefulSet",
                json!({"spec": {"template": {"spec": spec}}}),
                "/spec/template/spec",
            ),
            (
                "DaemonSet",
                json!({"spec": {"template": {"spec": spec}}}),
                "/spec/template/spec",
            ),
            (
                "Job",
                json!({"spec": {"template": {"spec": spec}}}),
                "/spec/template/spec",
            ),
            (
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
                "/spec/jobTemplate/spec/template/spec",
            ),
        ];
        for (kind, obj, at) in cases {
            let p = pod(kind, &obj).unwrap().unwrap();
            let got: Vec<(ContainerKind, &str, &str, String)> = p
                .containers
                .iter()
                .map(|c| (c.kind, c.name.as_str(), c.image.as_str(), c.pointer.clone()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (
                        ContainerKind::Container,
                        "app",
                        "a:1",
                        format!("{at}/containers/0/image")
                    ),
                    (
                        ContainerKind::Init,
                        "init",
                        "i:1",
                        format!("{at}/initContainers/0/image")
                    ),
                    (
                        ContainerKind::Ephemeral,
                        "debug",
                        "d:1",
                        format!("{at}/ephemeralContainers/0/image")
                    ),
                ],
                "{kind}"
            );
            assert_eq!(obj.pointer(&p.containers[1].pointer).unwrap(), "i:1");
        }
        assert!(pod("ConfigMap", &json!({})).unwrap().is_none());
        assert!(
            pod("Deployment", &json!({"spec": {}}))
                .unwrap_err()
                .contains("no pod spec")
        );
    }
}
