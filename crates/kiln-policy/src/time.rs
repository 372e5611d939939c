//! The few date computations policies need (ignore `until` dates, `max_age`, config
//! `created`), without a date crate: days from the civil calendar (Howard Hinnant's
//! algorithm), UTC only.

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` as seconds since the epoch at the start of that day (UTC).
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.get(..2)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1000..=9999).contains(&y) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400)
}

/// An RFC 3339 time (`2024-01-02T03:04:05Z`, fractions and offsets allowed) as seconds
/// since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let day = parse_date(s.get(..10)?)?;
    let rest = s.get(10..)?;
    let rest = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix('t'))
        .or_else(|| rest.strip_prefix(' '))?;
    let num = |a: usize, b: usize| rest.get(a..b).and_then(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (num(0, 2)?, num(3, 5)?, num(6, 8)?);
    let mut tail = &rest[8..];
    if let Some(f) = tail.strip_prefix('.') {
        tail = f.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match tail {
        "Z" | "z" | "" => 0,
        t if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) => {
            let oh: i64 = t.get(1..3)?.parse().ok()?;
            let om: i64 = t.get(4..6)?.parse().ok()?;
            let o = oh * 3600 + om * 60;
            if t.starts_with('+') { o } else { -o }
        }
        _ => return None,
    };
    Some(day + h * 3600 + mi * 60 + se - offset)
}

/// `90d`, `12h`, `30m`, `45s`, `2w` as seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s.get(..s.len() - 1)?.parse().ok()?;
    let mul = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mul).filter(|v| *v >= 0)
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-03-01"), Some(1_709_251_200));
        assert_eq!(parse_rfc3339("2024-03-01T00:00:10Z"), Some(1_709_251_210));
        assert_eq!(parse_rfc3339("2024-03-01T01:00:10.5+01:00"), Some(1_709_251_210));
        assert_eq!(parse_duration("90d"), Some(90 * 86_400));
        assert!(parse_duration("90x").is_none());
        assert!(parse_date("2024-13-01").is_none());
    }
}
