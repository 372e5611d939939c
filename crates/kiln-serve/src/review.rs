//! AdmissionReview `admission.k8s.io/v1`, hand-written (kube-core would drag in
//! k8s-openapi): the request kube-apiserver sends and the response it expects back.
//! Only the fields a webhook reads are typed; the object stays JSON.

use serde::{Deserialize, Serialize};

/// The API version of every review this server reads and writes.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// A review as sent by kube-apiserver.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewIn {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be `AdmissionReview`.
    pub kind: String,
    /// The request; a review without one is malformed.
    pub request: Option<Request>,
}

/// Group, version and kind of the object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    /// API group (empty for the core group).
    #[serde(default)]
    pub group: String,
    /// Version.
    #[serde(default)]
    pub version: String,
    /// Kind (`Pod`, `Deployment`…).
    #[serde(default)]
    pub kind: String,
}

/// The user the request comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// User name.
    #[serde(default)]
    pub username: String,
}

/// `request` of a review.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Echoed in the response.
    pub uid: String,
    /// The object's kind.
    pub kind: GroupVersionKind,
    /// The sub-resource, if any (`ephemeralcontainers`).
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// The object's name (empty on CREATE with `generateName`).
    #[serde(default)]
    pub name: Option<String>,
    /// The object's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    #[serde(default)]
    pub operation: String,
    /// Who asks.
    #[serde(default)]
    pub user_info: UserInfo,
    /// The object as it would be stored.
    #[serde(default)]
    pub object: Option<serde_json::Value>,
    /// A dry run: decided, not recorded.
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// The review sent back.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut {
    /// [`API_VERSION`].
    pub api_version: &'static str,
    /// `AdmissionReview`.
    pub kind: &'static str,
    /// The answer.
    pub response: Response,
}

/// `response` of a review.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// The request's uid.
    pub uid: String,
    /// Whether the object is admitted.
    pub allowed: bool,
    /// Why not (a denial only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Shown to the client (warn-mode violations); each at most 120 characters is advised,
    /// longer ones are kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `JSONPatch` when a patch is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// The patch, base64 of the JSON array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// `status` of a denial.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// HTTP-like code: 403 for a policy denial, 500 when the decision failed.
    pub code: u16,
    /// The reason, every violation by container.
    pub message: String,
}

impl ReviewOut {
    /// Wraps a response.
    pub fn new(response: Response) -> ReviewOut {
        ReviewOut {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response,
        }
    }
}

/// Why a body is not an AdmissionReview this server can answer (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed AdmissionReview: {0}")]
pub struct Malformed(pub String);

/// Parses a request body: JSON, `admission.k8s.io/v1`, `AdmissionReview`, with a request
/// carrying a uid.
pub fn parse(body: &[u8]) -> Result<(Request, ReviewIn), Malformed> {
    let review: ReviewIn = serde_json::from_slice(body).map_err(|e| Malformed(e.to_string()))?;
    if review.api_version != API_VERSION {
        return Err(Malformed(format!(
            "apiVersion is {:?}, this webhook speaks {API_VERSION} (set admissionReviewVersions: [v1])",
            review.api_version
        )));
    }
    if review.kind != "AdmissionReview" {
        return Err(Malformed(format!(
            "kind is {:?}, expected AdmissionReview",
            review.kind
        )));
    }
    let Some(request) = review.request.clone() else {
        return Err(Malformed("no request in the review".into()));
    };
    if request.uid.is_empty() {
        return Err(Malformed("request.uid is empty".into()));
    }
    Ok((request, review))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_apiserver_sends_and_refuses_the_rest() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
            "uid":"705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind":{"group":"","version":"v1","kind":"Pod"},
            "resource":{"group":"","version":"v1","resource":"pods"},
            "requestKind":{"group":"","version":"v1","kind":"Pod"},
            "name":"web","namespace":"default","operation":"CREATE",
            "userInfo":{"username":"admin","uid":"014fbff9a07c","groups":["system:authenticated"]},
            "object":{"apiVersion":"v1","kind":"Pod"},"oldObject":null,"dryRun":false,
            "options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}}}"#;
        let (r, _) = parse(body).unwrap();
        assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r.kind.kind, "Pod");
        assert_eq!(r.dry_run, Some(false));
        assert!(parse(b"{").unwrap_err().0.contains("EOF"));
        let v1beta1 =
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"a","kind":{}}}"#;
        assert!(parse(v1beta1).unwrap_err().0.contains("admissionReviewVersions"));
        let none = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        assert_eq!(parse(none).unwrap_err().0, "no request in the review");
    }

    #[test]
    fn responses_serialise_as_the_apiserver_reads_them() {
        let out = ReviewOut::new(Response {
            uid: "u".into(),
            allowed: false,
            status: Some(Status {
                code: 403,
                message: "no".into(),
            }),
            ..Response::default()
        });
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":false,"status":{"code":403,"message":"no"}}}"#
        );
    }
}
