//! Latency histograms (HdrHistogram, nanoseconds, 3 significant digits), medians of
//! repeated runs, and number formatting shared by every subcommand.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Lowest and highest latency a histogram tracks: 1 ns .. 10 min.
const HIST_MAX_NS: u64 = 600_000_000_000;

/// A latency histogram in nanoseconds.
pub type Hist = Histogram<u64>;

pub fn new_hist() -> Hist {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Hist, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns);
}

/// The value at quantile `q` (0..=1) in microseconds; 0 for an empty histogram.
pub fn q_us(h: &Hist, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

pub fn max_us(h: &Hist) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.max() as f64 / 1000.0
}

/// Median of `v` (mean of the two middle values for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Microseconds with a unit that keeps 3-4 significant digits: "183us", "1.24ms", "2.10s".
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// Seconds with 3 decimals.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn quantiles_in_us() {
        let mut h = new_hist();
        for i in 1..=100u64 {
            record(&mut h, Duration::from_micros(i));
        }
        assert!((q_us(&h, 0.5) - 50.0).abs() < 0.1);
        assert!((max_us(&h) - 100.0).abs() < 0.1);
    }
}
