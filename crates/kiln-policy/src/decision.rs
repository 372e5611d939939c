//! What a policy decides about one image.

use serde::{Deserialize, Serialize};

use crate::model::Mode;

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The rule's name (`(default)` when no rule matched).
    pub rule: String,
    /// Enforce (denies) or warn (reported only).
    pub mode: Mode,
    /// What failed.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

/// The decision for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The reference as given.
    pub reference: String,
    /// The digest decided on.
    pub digest: String,
    /// False when any enforce-mode violation (or no rule, with `default: deny`).
    pub allowed: bool,
    /// The rules that matched.
    pub rules: Vec<String>,
    /// Enforce-mode violations: each denies.
    pub violations: Vec<Violation>,
    /// Warn-mode violations: reported, the image is still allowed.
    pub warnings: Vec<Violation>,
    /// The policy's hash.
    pub policy: String,
}

impl Violation {
    /// `rule: message (fix)`, as `kiln policy check` prints it.
    pub fn line(&self) -> String {
        format!("{}: {} ({})", self.rule, self.message, self.fix)
    }
}
