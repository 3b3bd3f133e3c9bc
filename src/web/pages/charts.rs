//! Bar charts drawn by the server as inline SVG (no script, no external library). Owns: the
//! geometry (a round scale, bar positions, axis labels) in the SVG's own units; the markup and the
//! text alternatives are the template's (`partials/chart.html`), the colours the style sheet's.
//!
//! The drawing is 600 × 260 units and scales with the page: text is sized so that it stays
//! readable from a phone column (about 300 px wide; the style sheet enlarges the text there) to
//! a desktop column (about 470 px).

/// Width and height of the drawing, in SVG units.
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 260.0;
/// Room for the value axis on the left, the category labels below, the marks above.
const LEFT: f64 = 76.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 44.0;
/// Bars are never wider than this (a chart of three regions).
const MAX_BAR: f64 = 96.0;

/// One value to draw.
#[derive(Clone, Debug)]
pub struct Datum {
    pub value: f64,
    /// The bar's tooltip (its `<title>`).
    pub title: String,
    /// The CSS class giving its colour.
    pub class: &'static str,
    /// A label under the bar (shown only for some bars when there are many).
    pub label: Option<String>,
    /// A short text above the bar: its value, or a sign for a failed round.
    pub mark: Option<String>,
}

/// A bar, ready for the template (coordinates already formatted).
#[derive(Clone, Debug)]
pub struct Bar {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    pub center: String,
    pub mark_y: String,
    pub title: String,
    pub class: &'static str,
    pub mark: Option<String>,
}

/// A line of the value axis.
#[derive(Clone, Debug)]
pub struct Tick {
    pub y: String,
    pub label: String,
}

/// A label under the bars.
#[derive(Clone, Debug)]
pub struct Label {
    pub x: String,
    pub text: String,
    /// `middle` under its bar; with many thin bars the first label starts at its bar and the
    /// last one ends at its bar, so that neither runs off the drawing.
    pub anchor: &'static str,
}

/// A chart for `partials/chart.html`.
#[derive(Clone, Debug)]
pub struct BarChart {
    /// Unique in the page: the base of the SVG's element ids.
    pub id: &'static str,
    pub title: String,
    /// What the chart shows, in one or two sentences (its `<desc>`).
    pub desc: String,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    pub labels: Vec<Label>,
    pub view_box: String,
    pub left: String,
    pub right: String,
    pub baseline: String,
    pub label_y: String,
}

fn n(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

/// The smallest round step (1, 2, 2.5 or 5 times a power of ten) such that `steps` of them cover `max`.
fn step_for(max: f64, steps: f64) -> f64 {
    let target = (max / steps).max(f64::MIN_POSITIVE);
    let mut power = 10f64.powf(target.log10().floor());
    loop {
        for factor in [1.0, 2.0, 2.5, 5.0] {
            // 2.5 only where it keeps the labels whole.
            if factor == 2.5 && power < 10.0 {
                continue;
            }
            if factor * power >= target - 1e-9 {
                return factor * power;
            }
        }
        power *= 10.0;
    }
}

/// The value axis: its top and its ticks (0 included), for values up to `max`. `whole` keeps the
/// step at 1 or more (counts).
pub fn scale(max: f64, whole: bool) -> (f64, Vec<f64>) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let mut step = step_for(max, 4.0);
    if whole {
        step = step.max(1.0);
    }
    let count = (max / step - 1e-9).ceil().max(1.0);
    let top = step * count;
    let ticks = (0..=count as u32).map(|i| step * f64::from(i)).collect();
    (top, ticks)
}

impl BarChart {
    /// Bars for `data` left to right, the value axis labelled by `unit` (`12 ms`, `3`).
    pub fn new(id: &'static str, title: String, desc: String, data: &[Datum], whole: bool, unit: impl Fn(f64) -> String) -> Self {
        let plot_width = WIDTH - LEFT - RIGHT;
        let plot_height = HEIGHT - TOP - BOTTOM;
        let baseline = HEIGHT - BOTTOM;
        let max = data.iter().map(|d| d.value).fold(0.0, f64::max);
        let (top, ticks) = scale(max, whole);
        let slot = plot_width / data.len().max(1) as f64;
        let width = (slot * 0.75).clamp(1.0, MAX_BAR);
        let bars = data
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let center = LEFT + slot * (i as f64 + 0.5);
                let value = if d.value.is_finite() { d.value.max(0.0) } else { 0.0 };
                // A bar of zero still shows as a hairline, so a round is seen even when instant.
                let height = (value / top * plot_height).max(if value > 0.0 { 1.5 } else { 0.0 });
                Bar {
                    x: n(center - width / 2.0),
                    y: n(baseline - height),
                    width: n(width),
                    height: n(height),
                    center: n(center),
                    mark_y: n(baseline - height - 6.0),
                    title: d.title.clone(),
                    class: d.class,
                    mark: d.mark.clone(),
                }
            })
            .collect();
        let ticks = ticks.into_iter().map(|t| Tick { y: n(baseline - t / top * plot_height), label: unit(t) }).collect();
        let many = data.len() > 12;
        let last = data.len().saturating_sub(1);
        let labels = data
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let center = LEFT + slot * (i as f64 + 0.5);
                let (x, anchor) = match i {
                    0 if many => (center - width / 2.0, "start"),
                    i if many && i == last => (center + width / 2.0, "end"),
                    _ => (center, "middle"),
                };
                d.label.as_ref().map(|text| Label { x: n(x), text: text.clone(), anchor })
            })
            .collect();
        Self {
            id,
            title,
            desc,
            bars,
            ticks,
            labels,
            view_box: format!("0 0 {} {}", n(WIDTH), n(HEIGHT)),
            left: n(LEFT),
            right: n(WIDTH - RIGHT),
            baseline: n(baseline),
            label_y: n(baseline + 32.0),
        }
    }

    /// The x of the value labels (right-aligned against the plot).
    pub fn tick_x(&self) -> String {
        n(LEFT - 8.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round_and_cover_the_values() {
        assert_eq!(scale(45.0, false), (60.0, vec![0.0, 20.0, 40.0, 60.0]));
        assert_eq!(scale(3.0, true), (3.0, vec![0.0, 1.0, 2.0, 3.0]));
        assert_eq!(scale(0.0, true), (1.0, vec![0.0, 1.0]));
        assert!((scale(0.4, false).0 - 0.4).abs() < 1e-9);
        assert_eq!(scale(95.0, false), (100.0, vec![0.0, 25.0, 50.0, 75.0, 100.0]));
        assert_eq!(scale(1234.0, false).0, 1500.0);
        assert_eq!(scale(f64::NAN, false).0, 1.0);
    }

    #[test]
    fn bars_stand_on_the_baseline_within_the_drawing() {
        let datum = |value: f64| Datum { value, title: format!("{value}"), class: "bar", label: None, mark: None };
        let chart = BarChart::new("t", "T".into(), "D".into(), &[datum(0.0), datum(2.0), datum(4.0)], true, n);
        let bottom = |b: &Bar| b.y.parse::<f64>().unwrap() + b.height.parse::<f64>().unwrap();
        for bar in &chart.bars {
            assert!((bottom(bar) - (HEIGHT - BOTTOM)).abs() < 0.11, "{bar:?}");
            let x: f64 = bar.x.parse().unwrap();
            assert!(x >= LEFT && x + bar.width.parse::<f64>().unwrap() <= WIDTH - RIGHT);
        }
        assert_eq!(chart.bars[0].height, "0");
        assert_eq!(chart.bars[2].y, n(TOP), "the largest bar reaches the top of the scale");
        assert_eq!(chart.bars[1].width, n(MAX_BAR));
        assert_eq!(chart.ticks.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(), ["0", "1", "2", "3", "4"]);
    }
}
