//! `/metrics` in the Prometheus text format: requests by endpoint and HTTP code, a latency
//! histogram, decisions by result, and decision cache hits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    decisions: BTreeMap<String, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    cache_hits: u64,
    image_decisions: u64,
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    /// Counts one HTTP request to `endpoint` answered with `code` after `took`.
    pub fn request(&self, endpoint: &str, code: u16, took: Duration) {
        let s = took.as_secs_f64();
        self.with(|m| {
            *m.requests.entry((endpoint.to_string(), code)).or_default() += 1;
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    m.buckets[i] += 1;
                }
            }
            m.count += 1;
            m.sum += s;
        });
    }

    /// Counts one admission decision by result, and its images' cache hits.
    pub fn decision(&self, result: &str, images: usize, cache_hits: usize) {
        self.with(|m| {
            *m.decisions.entry(result.to_string()).or_default() += 1;
            m.image_decisions += images as u64;
            m.cache_hits += cache_hits as u64;
        });
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = String::new();
        s.push_str("# HELP kiln_serve_requests_total HTTP requests by endpoint and status code.\n");
        s.push_str("# TYPE kiln_serve_requests_total counter\n");
        for ((e, c), n) in &m.requests {
            let _ = writeln!(s, "kiln_serve_requests_total{{endpoint=\"{e}\",code=\"{c}\"}} {n}");
        }
        s.push_str("# HELP kiln_serve_request_duration_seconds Time to answer an admission request.\n");
        s.push_str("# TYPE kiln_serve_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "kiln_serve_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                m.buckets[i]
            );
        }
        let _ = writeln!(
            s,
            "kiln_serve_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            m.count
        );
        let _ = writeln!(s, "kiln_serve_request_duration_seconds_sum {}", m.sum);
        let _ = writeln!(s, "kiln_serve_request_duration_seconds_count {}", m.count);
        s.push_str("# HELP kiln_serve_decisions_total Admission decisions by result.\n");
        s.push_str("# TYPE kiln_serve_decisions_total counter\n");
        for (r, n) in &m.decisions {
            let _ = writeln!(s, "kiln_serve_decisions_total{{result=\"{r}\"}} {n}");
        }
        s.push_str("# HELP kiln_serve_image_decisions_total Image decisions made or read from the cache.\n");
        s.push_str("# TYPE kiln_serve_image_decisions_total counter\n");
        let _ = writeln!(s, "kiln_serve_image_decisions_total {}", m.image_decisions);
        s.push_str("# HELP kiln_serve_cache_hits_total Image decisions answered from the decision cache.\n");
        s.push_str("# TYPE kiln_serve_cache_hits_total counter\n");
        let _ = writeln!(s, "kiln_serve_cache_hits_total {}", m.cache_hits);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.request("validate", 200, Duration::from_millis(2));
        m.request("validate", 400, Duration::from_millis(30));
        m.decision("allowed", 3, 2);
        let t = m.render();
        assert!(
            t.contains("kiln_serve_requests_total{endpoint=\"validate\",code=\"200\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("kiln_serve_request_duration_seconds_bucket{le=\"0.0025\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("kiln_serve_request_duration_seconds_bucket{le=\"0.05\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("kiln_serve_request_duration_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("kiln_serve_decisions_total{result=\"allowed\"} 1\n"), "{t}");
        assert!(t.contains("kiln_serve_cache_hits_total 2\n"), "{t}");
    }
}
