//! Statistics over runs and the report's Markdown tables.

use std::fmt::Write as _;
use std::time::Duration;

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The median of durations, in milliseconds.
pub fn median_ms(values: &[Duration]) -> f64 {
    median(
        &values
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect::<Vec<_>>(),
    )
}

/// A latency histogram in microseconds: 1 µs to 10 minutes at three significant digits.
pub fn histogram() -> Result<hdrhistogram::Histogram<u64>, String> {
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())
}

/// Records `elapsed` in `histogram`, saturating at its upper bound rather than failing.
pub fn record(histogram: &mut hdrhistogram::Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// One table of the report.
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    /// What the reader needs to read the table right (workload, what is and is not timed).
    pub notes: Vec<String>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Section {
    pub fn new(title: &str, columns: &[&str]) -> Self {
        Self {
            title: title.to_owned(),
            notes: Vec::new(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The section as Markdown: a heading, its notes, and the table.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "#### {}\n", self.title);
        // A blank line after each note keeps notes apart as Markdown paragraphs.
        for note in &self.notes {
            let _ = writeln!(out, "{note}\n");
        }
        let _ = writeln!(out, "| {} |", self.columns.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            self.columns.iter().map(|_| " --- |").collect::<String>()
        );
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }
}

/// A number with thousands separators: `12345.6` → `12,346`.
pub fn grouped(value: f64) -> String {
    let rounded = value.round();
    if !rounded.is_finite() {
        return "n/a".into();
    }
    let digits = format!("{:.0}", rounded.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Milliseconds with sensible precision: `0.42`, `3.1`, `125`.
pub fn ms(value: f64) -> String {
    if value < 1.0 {
        format!("{value:.2}")
    } else if value < 10.0 {
        format!("{value:.1}")
    } else {
        grouped(value)
    }
}

/// Microseconds with sensible precision.
pub fn us(value: f64) -> String {
    if value < 100.0 {
        format!("{value:.1}")
    } else {
        grouped(value)
    }
}

/// A byte count in MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    let value = bytes as f64 / (1024.0 * 1024.0);
    format!("{value:.1} MiB")
}
