//! SARIF 2.1.0 for `kiln analyze`: one result per wasted path, at the Dockerfile line of the
//! layer that made the earlier copy wasted (the last layer that wrote or removed it), so code
//! scanning shows the waste on the instruction to fix; plus one result per failed CI rule.

use kiln_sarif::{Configuration, Level, Location, Log, Message, Run, SarifResult};

use crate::ci::RuleResult;
use crate::report::Analysis;

const WASTE: &str = "kiln-analyze/wasted-bytes";
const THRESHOLD: &str = "kiln-analyze/ci-threshold";

fn rule(id: &str, name: &str, text: &str, level: Level) -> kiln_sarif::Rule {
    kiln_sarif::Rule {
        id: id.to_string(),
        name: Some(name.to_string()),
        short_description: Message::new(text),
        full_description: None,
        help: None,
        help_uri: None,
        default_configuration: Configuration { level },
        properties: serde_json::Map::new(),
    }
}

/// Where a finding for `layer` points: its `Dockerfile:LINE` when known, else the image.
fn location(a: &Analysis, layer: Option<usize>) -> Location {
    match layer
        .and_then(|l| a.layers[l].source.as_deref())
        .and_then(|s| s.rsplit_once(':'))
    {
        Some((file, line)) => Location::file(file, line.parse().ok()),
        None => Location::file(&a.image, None),
    }
}

/// The SARIF log.
pub fn to_sarif(a: &Analysis, ci: &[RuleResult]) -> Log {
    let mut results = Vec::new();
    for f in &a.wasted_files {
        let layer = f.layers.last().copied();
        let by = layer
            .and_then(|l| a.layers[l].created_by.clone())
            .unwrap_or_else(|| "a later layer".into());
        results.push(SarifResult {
            rule_id: WASTE.into(),
            rule_index: 0,
            level: Level::Warning,
            message: Message::new(format!(
                "{} is stored {} times ({} bytes in all, layers {}); {by} rewrites or removes it",
                f.path,
                f.count,
                f.size_bytes,
                f.layers
                    .iter()
                    .map(|l| (l + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            locations: vec![location(a, layer)],
            partial_fingerprints: serde_json::Map::new(),
        });
    }
    for r in ci.iter().filter(|r| r.status == "fail") {
        results.push(SarifResult {
            rule_id: THRESHOLD.into(),
            rule_index: 1,
            level: Level::Error,
            message: Message::new(format!("{}: {}", r.rule, r.message)),
            locations: vec![location(a, None)],
            partial_fingerprints: serde_json::Map::new(),
        });
    }
    Log::new(Run::kiln(
        "kiln analyze",
        None,
        vec![
            rule(
                WASTE,
                "WastedBytes",
                "A file is stored in more than one layer, or stored and then removed",
                Level::Warning,
            ),
            rule(
                THRESHOLD,
                "CiThreshold",
                "The image crosses a --ci efficiency or waste threshold",
                Level::Error,
            ),
        ],
        results,
    ))
}
