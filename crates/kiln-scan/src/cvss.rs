//! CVSS base scores from vectors, so a finding's severity comes from the record itself
//! (OSV carries vectors, not scores). v3.0/v3.1 and v2 are scored; v4 vectors are not (their
//! scoring needs a large lookup table), and the record's database severity is used instead.

use crate::Severity;

/// The base score of a CVSS vector, or `None` when it is not a v2/v3 vector kiln can score.
pub fn base_score(vector: &str) -> Option<f64> {
    if vector.starts_with("CVSS:3.") {
        v3(vector)
    } else if vector.starts_with("CVSS:") {
        None
    } else {
        v2(vector)
    }
}

/// The qualitative rating of a score (CVSS v3's table; v2 has no Critical, see below).
pub fn severity_of(vector: &str) -> Option<Severity> {
    let s = base_score(vector)?;
    let v2 = !vector.starts_with("CVSS:");
    Some(if s == 0.0 {
        Severity::Unknown
    } else if s < 4.0 {
        Severity::Low
    } else if s < 7.0 {
        Severity::Medium
    } else if s < 9.0 || v2 {
        Severity::High
    } else {
        Severity::Critical
    })
}

fn metrics(vector: &str) -> std::collections::HashMap<&str, &str> {
    vector.split('/').filter_map(|p| p.split_once(':')).collect()
}

/// CVSS 3.1's "round up to one decimal", done on integers to avoid float surprises.
fn roundup(x: f64) -> f64 {
    let i = (x * 100_000.0).round() as i64;
    if i % 10_000 == 0 {
        i as f64 / 100_000.0
    } else {
        ((i / 10_000) + 1) as f64 / 10.0
    }
}

fn v3(vector: &str) -> Option<f64> {
    let m = metrics(vector);
    let changed = match *m.get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (*m.get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        match *m.get(k)? {
            "H" => Some(0.56),
            "L" => Some(0.22),
            "N" => Some(0.0),
            _ => None,
        }
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let expl = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Some(0.0);
    }
    Some(if changed {
        roundup((1.08 * (impact + expl)).min(10.0))
    } else {
        roundup((impact + expl).min(10.0))
    })
}

fn v2(vector: &str) -> Option<f64> {
    let m = metrics(vector.trim_start_matches('(').trim_end_matches(')'));
    let av = match *m.get("AV")? {
        "L" => 0.395,
        "A" => 0.646,
        "N" => 1.0,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "H" => 0.35,
        "M" => 0.61,
        "L" => 0.71,
        _ => return None,
    };
    let au = match *m.get("Au")? {
        "M" => 0.45,
        "S" => 0.56,
        "N" => 0.704,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        match *m.get(k)? {
            "N" => Some(0.0),
            "P" => Some(0.275),
            "C" => Some(0.660),
            _ => None,
        }
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let impact = 10.41 * (1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a));
    let expl = 20.0 * av * ac * au;
    let f = if impact == 0.0 { 0.0 } else { 1.176 };
    Some((((0.6 * impact) + (0.4 * expl) - 1.5) * f * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_scores() {
        // Log4Shell, Heartbleed-style and a local low.
        assert_eq!(base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"), Some(10.0));
        assert_eq!(base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"), Some(7.5));
        assert_eq!(base_score("CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:L/I:N/A:N"), Some(2.5));
        assert_eq!(base_score("CVSS:3.0/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"), Some(8.8));
        assert_eq!(base_score("AV:N/AC:L/Au:N/C:P/I:N/A:N"), Some(5.0));
        assert_eq!(
            base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            None
        );
        assert_eq!(
            severity_of("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"),
            Some(Severity::Critical)
        );
    }
}
