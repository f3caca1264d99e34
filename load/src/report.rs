//! Results: a table for people and JSON for files.
use hdrhistogram::Histogram;
use serde_json::{json, Value};

pub struct Report {
    /// Whether every message arrived exactly once.
    pub ok: bool,
    pub rows: Vec<(String, String)>,
    pub json: Value,
}

impl Report {
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        self.rows.iter().map(|(k, v)| format!("{k:<width$}  {v}")).collect::<Vec<_>>().join("\n")
    }
}

/// Latency in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

pub fn millis(h: &Histogram<u64>, quantile: f64) -> f64 {
    h.value_at_quantile(quantile) as f64 / 1000.0
}

/// p50/p99/p99.9/max in milliseconds, as JSON and as one table cell.
pub fn latency_summary(h: &Histogram<u64>) -> (Value, String) {
    let (p50, p99, p999, max) = (millis(h, 0.5), millis(h, 0.99), millis(h, 0.999), h.max() as f64 / 1000.0);
    (
        json!({"p50_ms": p50, "p99_ms": p99, "p999_ms": p999, "max_ms": max, "samples": h.len()}),
        format!("p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms ({} samples)", h.len()),
    )
}
