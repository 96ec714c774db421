//! Latency-over-time plots (PNG) with plotters' bitmap backend.
//!
//! Text is drawn with ab_glyph from a TrueType file read at run time (DejaVu Sans or
//! Liberation Sans from Debian's font packages), so there is no fontconfig/freetype
//! dependency. Without any of those files the plot is still drawn, without text, and a
//! note says so on stderr.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::load::LoadResult;

const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
];

/// Registers a font as "sans-serif" once; false when no font file was found.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        for f in FONT_FILES {
            if let Ok(bytes) = std::fs::read(f) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        eprintln!("zkd-bench: no TrueType font found ({FONT_FILES:?}); plot drawn without text");
        false
    })
}

/// One bin of the plot: start second, p50, p99, max (ms), ops in the bin.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub t: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub n: usize,
}

/// Groups `(ms, latency us)` samples into bins of `bin_ms`.
pub fn bins(samples: &[(u32, u32)], bin_ms: u32) -> Vec<Bin> {
    let bin_ms = bin_ms.max(1);
    let nb = samples
        .iter()
        .map(|s| s.0 / bin_ms)
        .max()
        .map_or(0, |m| m + 1) as usize;
    let mut per: Vec<Vec<u32>> = vec![Vec::new(); nb];
    for &(t, l) in samples {
        per[(t / bin_ms) as usize].push(l);
    }
    per.into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(i, mut v)| {
            v.sort_unstable();
            let q = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
            Bin {
                t: i as f64 * f64::from(bin_ms) / 1000.0,
                p50: q(0.5),
                p99: q(0.99),
                max: *v.last().expect("non-empty") as f64 / 1000.0,
                n: v.len(),
            }
        })
        .collect()
}

/// Draws p50, p99 and max latency per bin over the measured window into `path`.
pub fn latency_over_time(r: &LoadResult, path: &Path) -> Result<(), String> {
    let text = font_ready();
    let span_ms = (r.window_s * 1000.0).max(1.0);
    let bin_ms = ((span_ms / 120.0) as u32).clamp(50, 5_000);
    let b = bins(&r.samples, bin_ms);
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let x_max = (r.window_s).max(b.last().map_or(0.0, |b| b.t) + f64::from(bin_ms) / 1000.0);
    let y_min = b
        .iter()
        .map(|b| b.p50)
        .fold(f64::INFINITY, f64::min)
        .clamp(0.001, 1e6)
        / 2.0;
    let y_max = b
        .iter()
        .map(|b| b.max)
        .fold(0.0, f64::max)
        .max(y_min * 10.0)
        * 2.0;
    let title = format!(
        "{} {} {}x{}: {:.0} ops/s, latency per {} ms (log)",
        if r.args.label.is_empty() {
            &r.args.server
        } else {
            &r.args.label
        },
        r.args.workload.name(),
        r.args.sessions,
        r.args.pipeline,
        r.ops_per_s,
        bin_ms
    );
    let mut builder = ChartBuilder::on(&root);
    builder.margin(12);
    if text {
        builder
            .caption(title, ("sans-serif", 20))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
        .map_err(|e| err(&e))?;
    if text {
        chart
            .configure_mesh()
            .x_desc("seconds into the measured window")
            .y_desc("latency (ms)")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
    } else {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .draw()
            .map_err(|e| err(&e))?;
    }
    type Series = (&'static str, RGBColor, fn(&Bin) -> f64);
    let series: [Series; 3] = [
        ("p50", BLUE, |b| b.p50),
        ("p99", RGBColor(230, 120, 0), |b| b.p99),
        ("max", RED, |b| b.max),
    ];
    for (name, color, f) in series {
        let s = chart
            .draw_series(LineSeries::new(
                b.iter().map(|b| (b.t, f(b).max(y_min))),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        if text {
            s.label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_group_and_rank() {
        let s: Vec<(u32, u32)> = (0..200u32)
            .map(|i| (i * 10, (i % 100 + 1) * 1000))
            .collect();
        let b = bins(&s, 1000);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].n, 100);
        assert_eq!(b[0].max, 100.0);
        assert_eq!(b[1].t, 1.0);
    }
}
