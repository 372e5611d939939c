//! `kiln serve manifests`: what a cluster needs to run the webhook. A hardened Deployment
//! (2 replicas, non-root, read-only root filesystem, every capability dropped), its
//! Service, and the Validating- and MutatingWebhookConfiguration (`failurePolicy: Fail`,
//! `sideEffects: None`, a timeout above the server's deadline, the CA bundle, and a
//! namespaceSelector leaving out kube-system, the webhook's own namespace and namespaces
//! labelled `kiln.dev/admission: exempt`).

use base64::Engine as _;
use serde_json::{Value, json};

/// The label that exempts a namespace from admission.
pub const EXEMPT_LABEL: &str = "kiln.dev/admission";

/// What the manifests are made for.
#[derive(Debug, Clone)]
pub struct Target {
    /// The namespace the webhook runs in.
    pub namespace: String,
    /// The image running `kiln serve`.
    pub image: String,
    /// PEM CA bundle that signed the serving certificate.
    pub ca_bundle: Vec<u8>,
    /// The API server's timeout for each call, in seconds (at most 30).
    pub timeout_seconds: u32,
}

const NAME: &str = "kiln-serve";

fn labels() -> Value {
    json!({"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "admission-webhook"})
}

fn deployment(t: &Target) -> Value {
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": 8443, "scheme": "HTTPS"}, "periodSeconds": 10});
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": t.namespace, "labels": labels()},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                        "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "kiln-serve",
                        "image": t.image,
                        "args": ["serve", "--policy", "/etc/kiln/policy/kiln-policy.yaml",
                                 "--tls-cert", "/etc/kiln/tls/tls.crt", "--tls-key", "/etc/kiln/tls/tls.key",
                                 "--listen", "0.0.0.0:8443", "--exempt-namespace", "kube-system",
                                 "--exempt-namespace", t.namespace],
                        "env": [{"name": "KILN_HOME", "value": "/var/lib/kiln"}],
                        "ports": [{"name": "https", "containerPort": 8443, "protocol": "TCP"}],
                        "readinessProbe": probe("/readyz"),
                        "livenessProbe": probe("/healthz"),
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                        "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true,
                                            "allowPrivilegeEscalation": false, "privileged": false,
                                            "capabilities": {"drop": ["ALL"]},
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                        "volumeMounts": [
                            {"name": "tls", "mountPath": "/etc/kiln/tls", "readOnly": true},
                            {"name": "policy", "mountPath": "/etc/kiln/policy", "readOnly": true},
                            {"name": "state", "mountPath": "/var/lib/kiln"},
                            {"name": "tmp", "mountPath": "/tmp"}
                        ]
                    }],
                    "volumes": [
                        {"name": "tls", "secret": {"secretName": "kiln-serve-tls"}},
                        {"name": "policy", "configMap": {"name": "kiln-serve-policy"}},
                        {"name": "state", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory"}}
                    ]
                }
            }
        }
    })
}

fn service(t: &Target) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": t.namespace, "labels": labels()},
        "spec": {
            "selector": {"app.kubernetes.io/name": NAME},
            "ports": [{"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]
        }
    })
}

fn webhook(t: &Target, kind: &str, name: &str, path: &str) -> Value {
    let rules = json!([
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
         "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers"], "scope": "Namespaced"},
        {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
         "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"], "scope": "Namespaced"},
        {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
         "resources": ["jobs", "cronjobs"], "scope": "Namespaced"}
    ]);
    let mut hook = json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": {
            "service": {"namespace": t.namespace, "name": NAME, "path": path, "port": 443},
            "caBundle": base64::engine::general_purpose::STANDARD.encode(&t.ca_bundle)
        },
        "rules": rules,
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "timeoutSeconds": t.timeout_seconds,
        "matchPolicy": "Equivalent",
        "namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", t.namespace]},
            {"key": EXEMPT_LABEL, "operator": "NotIn", "values": ["exempt"]}
        ]}
    });
    if kind == "MutatingWebhookConfiguration" {
        hook["reinvocationPolicy"] = json!("IfNeeded");
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": NAME, "labels": labels()},
        "webhooks": [hook]
    })
}

/// The manifests, as one multi-document YAML stream.
pub fn render(t: &Target) -> String {
    let docs = [
        deployment(t),
        service(t),
        webhook(t, "ValidatingWebhookConfiguration", "validate.kiln.dev", "/validate"),
        webhook(t, "MutatingWebhookConfiguration", "mutate.kiln.dev", "/mutate"),
    ];
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&d).expect("manifests serialise"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_documents_failing_closed_with_the_ca_bundle() {
        let t = Target {
            namespace: "kiln-system".into(),
            image: "registry.example.com/kiln:1".into(),
            ca_bundle: b"-----BEGIN CERTIFICATE-----\n".to_vec(),
            timeout_seconds: 10,
        };
        let text = render(&t);
        let docs: Vec<Value> = text
            .split("---\n")
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_yaml::from_str(d).unwrap())
            .collect();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Deployment",
                "Service",
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration"
            ]
        );
        assert_eq!(docs[0]["spec"]["replicas"], 2);
        for hook in [&docs[2]["webhooks"][0], &docs[3]["webhooks"][0]] {
            assert_eq!(hook["failurePolicy"], "Fail");
            assert_eq!(hook["sideEffects"], "None");
            assert_eq!(
                hook["clientConfig"]["caBundle"],
                "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
            );
            let ns = &hook["namespaceSelector"]["matchExpressions"][0]["values"];
            assert_eq!(ns, &json!(["kube-system", "kiln-system"]));
        }
    }
}
