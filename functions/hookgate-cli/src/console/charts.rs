//! Line charts drawn by the server as SVG: the health page needs no chart library and no
//! script, and the numbers here are the only thing the template writes into the SVG.

/// Width and height of a chart's drawing area, in SVG units.
pub const WIDTH: f64 = 600.0;
/// Height of the drawing area.
pub const HEIGHT: f64 = 120.0;

/// One chart: a title, the `points` of its polyline (`x,y x,y …`), and the highest value.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// What it shows.
    pub title: String,
    /// The unit of its values (`events/s`, `ms`).
    pub unit: String,
    /// The polyline's points, in the drawing area (y grows downward).
    pub points: String,
    /// The highest value, as the top of the scale.
    pub max: String,
    /// The latest value.
    pub latest: String,
    /// How many values.
    pub len: usize,
}

impl LineChart {
    /// A chart of `values`, oldest first, scaled to the highest one (or 1).
    pub fn new(title: &str, unit: &str, values: &[f64]) -> Self {
        let max = values.iter().copied().fold(0.0_f64, f64::max);
        let top = if max > 0.0 { max } else { 1.0 };
        let step = if values.len() > 1 {
            WIDTH / (values.len() - 1) as f64
        } else {
            0.0
        };
        let points = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let x = i as f64 * step;
                let y = HEIGHT - (v.max(0.0) / top) * HEIGHT;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            title: title.to_owned(),
            unit: unit.to_owned(),
            points,
            max: number(max),
            latest: values.last().map_or_else(|| "–".to_owned(), |v| number(*v)),
            len: values.len(),
        }
    }
}

/// A value with at most two decimals, and none when it is whole.
pub fn number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_span_the_width_and_the_highest_value_touches_the_top() {
        let chart = LineChart::new("throughput", "events/s", &[0.0, 2.0, 1.0]);
        assert_eq!(chart.points, "0.0,120.0 300.0,0.0 600.0,60.0");
        assert_eq!(chart.max, "2");
        assert_eq!(chart.latest, "1");
        let flat = LineChart::new("t", "ms", &[0.0]);
        assert_eq!(flat.points, "0.0,120.0");
        assert_eq!(LineChart::new("t", "ms", &[]).latest, "–");
        assert_eq!(number(0.126), "0.13");
    }
}
