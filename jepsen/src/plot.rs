//! Latency-over-time plot: one point per completed client op (green ok, blue fail, red
//! info), y = latency in ms, with the nemesis's fault intervals shaded.
//!
//! Owns rendering a history to PNG with plotters' bitmap backend. Never reads anything but
//! the history; text needs a TrueType font (DejaVu from Debian), loaded at run time.

use std::path::Path;

use plotters::prelude::*;

use crate::history::{pairs, Op, OpType, NEMESIS};

fn register_font() -> bool {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONCE.get_or_init(|| {
        for p in ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"] {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                    .is_ok();
            }
        }
        false
    })
}

/// Fault intervals (start, stop) in seconds, from the nemesis's start/stop ops.
pub fn nemesis_intervals(history: &[Op]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut open: Option<f64> = None;
    let end = history.iter().map(|o| o.time).max().unwrap_or(0) as f64 / 1e9;
    for op in history.iter().filter(|o| o.process == NEMESIS) {
        match op.f.as_str() {
            "start" => open = Some(op.time as f64 / 1e9),
            "stop" => {
                if let Some(s) = open.take() {
                    out.push((s, op.time as f64 / 1e9));
                }
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        out.push((s, end));
    }
    out
}

pub fn render(history: &[Op], title: &str, path: &Path) -> Result<(), String> {
    let fonts = register_font();
    let mut pts: Vec<(f64, f64, OpType)> = Vec::new();
    for p in pairs(history) {
        if let Some(c) = p.complete {
            pts.push((
                p.invoke.time as f64 / 1e9,
                (c.time.saturating_sub(p.invoke.time)) as f64 / 1e6,
                c.kind,
            ));
        }
    }
    let t_max = history.iter().map(|o| o.time).max().unwrap_or(1) as f64 / 1e9;
    let l_max = pts.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut b = ChartBuilder::on(&root);
    b.margin(15);
    if fonts {
        b.caption(title, ("sans-serif", 20))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = b
        .build_cartesian_2d(0f64..t_max.max(1.0), (0.1f64..l_max.max(1.0)).log_scale())
        .map_err(|e| e.to_string())?;
    if fonts {
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("latency (ms, log)")
            .draw()
            .map_err(|e| e.to_string())?;
    }
    for (s, e) in nemesis_intervals(history) {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(s, 0.1), (e, l_max.max(1.0))],
                RGBColor(255, 200, 120).mix(0.4).filled(),
            )))
            .map_err(|e| e.to_string())?;
    }
    for (kind, color) in [
        (OpType::Ok, RGBColor(0, 150, 0)),
        (OpType::Fail, RGBColor(0, 0, 220)),
        (OpType::Info, RGBColor(220, 0, 0)),
    ] {
        let s = chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.2 == kind)
                    .map(|p| Circle::new((p.0, p.1.max(0.1)), 2, color.filled())),
            )
            .map_err(|e| e.to_string())?;
        if fonts {
            s.label(format!("{kind:?}").to_lowercase())
                .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
        }
    }
    if fonts {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
