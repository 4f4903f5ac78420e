//! A minimal SVG plotting surface (axes, lines, bars, points, labels) and the plots built on it.

use std::fmt::Write;

use rewardkit_eval::CalibrationReport;

/// A plot area mapping data coordinates to an SVG canvas.
pub struct Plot {
    width: f64,
    height: f64,
    margin: [f64; 4], // top, right, bottom, left
    x: (f64, f64),
    y: (f64, f64),
    body: String,
}

impl Plot {
    /// A `width × height` canvas showing x in `x.0..x.1` and y in `y.0..y.1`.
    pub fn new(width: f64, height: f64, x: (f64, f64), y: (f64, f64)) -> Self {
        Plot {
            width,
            height,
            margin: [48.0, 24.0, 56.0, 64.0],
            x,
            y,
            body: String::new(),
        }
    }

    fn px(&self, x: f64) -> f64 {
        let [_, r, _, l] = self.margin;
        l + (x - self.x.0) / (self.x.1 - self.x.0) * (self.width - l - r)
    }

    fn py(&self, y: f64) -> f64 {
        let [t, _, b, _] = self.margin;
        self.height - b - (y - self.y.0) / (self.y.1 - self.y.0) * (self.height - t - b)
    }

    /// Axes with ticks every `dx` / `dy` (0: none), axis labels and a title.
    pub fn axes(&mut self, dx: f64, dy: f64, xlabel: &str, ylabel: &str, title: &str) {
        let (x0, x1, y0, y1) = (
            self.px(self.x.0),
            self.px(self.x.1),
            self.py(self.y.0),
            self.py(self.y.1),
        );
        let mut s = String::new();
        let _ = write!(
            s,
            r##"<rect x="{x0:.1}" y="{y1:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
            x1 - x0,
            y0 - y1
        );
        // A step of 0 draws no ticks (category axes label their rows themselves).
        let ticks = |lo: f64, hi: f64, step: f64| {
            let n = if step > 0.0 {
                ((hi - lo) / step + 1e-9).floor() as usize + 1
            } else {
                0
            };
            (0..n).map(move |i| lo + i as f64 * step)
        };
        for t in ticks(self.x.0, self.x.1, dx) {
            let p = self.px(t);
            let _ = write!(
                s,
                r##"<line x1="{p:.1}" y1="{y0:.1}" x2="{p:.1}" y2="{:.1}" stroke="#333"/><text x="{p:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text>"##,
                y0 + 5.0,
                y0 + 19.0,
                tick_label(t)
            );
        }
        for t in ticks(self.y.0, self.y.1, dy) {
            let p = self.py(t);
            let _ = write!(
                s,
                r##"<line x1="{:.1}" y1="{p:.1}" x2="{x0:.1}" y2="{p:.1}" stroke="#333"/><line x1="{x0:.1}" y1="{p:.1}" x2="{x1:.1}" y2="{p:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="12">{}</text>"##,
                x0 - 5.0,
                x0 - 8.0,
                p + 4.0,
                tick_label(t)
            );
        }
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">{}</text><text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle" font-size="13">{}</text><text x="{:.1}" y="28" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"##,
            (x0 + x1) / 2.0,
            self.height - 14.0,
            escape(xlabel),
            18.0,
            (y0 + y1) / 2.0,
            escape(ylabel),
            self.width / 2.0,
            escape(title)
        );
        // Axes go under the data.
        self.body.insert_str(0, &s);
    }

    /// A polyline through `points` (data coordinates).
    pub fn line(&mut self, points: &[(f64, f64)], color: &str, dashed: bool) {
        let pts: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        let dash = if dashed {
            r#" stroke-dasharray="5,4""#
        } else {
            ""
        };
        let _ = write!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            pts.join(" ")
        );
    }

    /// A bar from y = `self.y.0` up to `y`, spanning `x_lo..x_hi`.
    pub fn bar(&mut self, x_lo: f64, x_hi: f64, y: f64, color: &str) {
        let (a, b) = (self.px(x_lo), self.px(x_hi));
        let (top, base) = (self.py(y), self.py(self.y.0));
        let _ = write!(
            self.body,
            r##"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{color}" stroke="#fff"/>"##,
            a + 1.0,
            (b - a - 2.0).max(0.0),
            (base - top).max(0.0)
        );
    }

    pub fn point(&mut self, x: f64, y: f64, r: f64, color: &str) {
        let _ = write!(
            self.body,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="{color}"/>"#,
            self.px(x),
            self.py(y)
        );
    }

    /// Text at data coordinates, shifted by `dy` pixels.
    pub fn label(&mut self, x: f64, y: f64, dy: f64, text: &str, size: f64) {
        let _ = write!(
            self.body,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="{size}" fill="#333">{}</text>"##,
            self.px(x),
            self.py(y) + dy,
            escape(text)
        );
    }

    /// Sets the margins (top, right, bottom, left) in pixels, e.g. room for long category labels.
    pub fn margins(mut self, margin: [f64; 4]) -> Self {
        self.margin = margin;
        self
    }

    /// A filled rectangle between two corners in data coordinates.
    pub fn rect(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), color: &str) {
        let (a, b) = (self.px(x0.min(x1)), self.px(x0.max(x1)));
        let (top, bottom) = (self.py(y0.max(y1)), self.py(y0.min(y1)));
        let _ = write!(
            self.body,
            r#"<rect x="{a:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>"#,
            b - a,
            bottom - top
        );
    }

    /// Text at data coordinates with an anchor (`start`, `middle`, `end`), shifted by `dx`
    /// pixels.
    pub fn text(&mut self, x: f64, y: f64, dx: f64, anchor: &str, text: &str, size: f64) {
        let _ = write!(
            self.body,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" font-size="{size}" fill="#333">{}</text>"##,
            self.px(x) + dx,
            self.py(y) + size / 3.0,
            escape(text)
        );
    }

    /// A legend: one (color, text) per line at the top left of the plot area.
    pub fn legend(&mut self, entries: &[(&str, &str)]) {
        let x = self.margin[3] + 12.0;
        for (i, (color, text)) in entries.iter().enumerate() {
            let y = self.margin[0] + 16.0 + 18.0 * i as f64;
            let _ = write!(
                self.body,
                r##"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"##,
                y - 10.0,
                x + 18.0,
                y,
                escape(text)
            );
        }
    }

    pub fn finish(self) -> String {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>{}</svg>
"#,
            self.body,
            w = self.width,
            h = self.height
        )
    }
}

fn tick_label(t: f64) -> String {
    let s = format!("{t:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The reliability diagram: per confidence bin, the share of pairs ranked right (bars) against
/// the mean confidence (points; a calibrated model has them on the diagonal), with counts.
pub fn reliability_svg(cal: &CalibrationReport, title: &str) -> String {
    let mut plot = Plot::new(640.0, 520.0, (0.5, 1.0), (0.0, 1.0));
    plot.axes(
        0.1,
        0.1,
        "confidence σ(|r_chosen − r_rejected|)",
        "accuracy (share ranked right)",
        title,
    );
    plot.line(&[(0.5, 0.5), (1.0, 1.0)], "#999", true);
    for bin in &cal.reliability {
        if let (Some(acc), Some(conf)) = (bin.accuracy, bin.confidence) {
            plot.bar(bin.lower, bin.upper, acc, "#6b9bd1");
            plot.point(conf, conf, 4.0, "#d1495b");
            plot.label(
                (bin.lower + bin.upper) / 2.0,
                acc,
                -6.0,
                &format!("n={}", bin.n),
                11.0,
            );
        }
    }
    let fmt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    let temp = match cal.temperature.temperature {
        Some(t) => format!("temperature T = {t:.3} → ECE {}", fmt(cal.temperature.ece)),
        None => "temperature: none".to_string(),
    };
    let summary = format!(
        "ECE {} · Brier {} · log loss {} · {} pairs",
        fmt(cal.ece),
        fmt(cal.brier),
        fmt(cal.log_loss),
        cal.n
    );
    plot.legend(&[
        ("#6b9bd1", "accuracy in bin"),
        ("#d1495b", "mean confidence (ideal: on the diagonal)"),
        ("#ffffff", &summary),
        ("#ffffff", &temp),
    ]);
    plot.finish()
}
