//! Where a figure's ticks go and what they say, and where its legend sits: plain functions of
//! the data, so that tests can check what the figures draw.
//!
//! Every tick is a position and its label, and the label is the position written out: parsing
//! the label gives the position back exactly, so a tick never says a value other than the one
//! it stands at.

/// A tick: its position on the axis and its label.
pub type Tick = (f64, String);

/// The most ticks an axis gets.
const MAX_TICKS: usize = 10;

/// `v` as the shortest text that parses back to `v`: plain digits from 0.001 to below 100000
/// (`0.01`, `250`), else in e-notation (`2e-4`, `1.5e5`).
pub fn number_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if (1e-3..1e5).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// `m × 10^k` exactly as the decimal text `{m}e{k}` reads (so `2e-4` is the double nearest
/// 0.0002, not `2.0 * 10f64.powi(-4)`).
fn decimal(m: i64, k: i32) -> f64 {
    format!("{m}e{k}").parse().unwrap_or(f64::NAN)
}

/// A tick at `v`, labelled by [`number_label`].
fn tick(v: f64) -> Tick {
    (v, number_label(v))
}

/// Integer epoch ticks for a history of epochs `first..=last` (1-based): every epoch up to 10
/// epochs, else every multiple of the smallest step of 1, 2 or 5 × 10^k epochs that gives at
/// most 10 ticks. Empty when `last < first`.
pub fn epoch_ticks(first: usize, last: usize) -> Vec<Tick> {
    if last < first {
        return Vec::new();
    }
    for k in 0..20u32 {
        for m in [1, 2, 5] {
            let step = m * 10usize.pow(k);
            if last / step - (first - 1) / step <= MAX_TICKS {
                let start = first.div_ceil(step) * step;
                return (start..=last).step_by(step).map(|e| (e as f64, e.to_string())).collect();
            }
        }
    }
    vec![(last as f64, last.to_string())]
}

/// Ticks at round values of a linear axis from `lo` to `hi`: the multiples of the smallest
/// step of 1, 2 or 5 × 10^k that gives at most `max` of them (and at least two when the range
/// holds two distinct 3-digit values).
pub fn linear_ticks(lo: f64, hi: f64, max: usize) -> Vec<Tick> {
    if !(lo.is_finite() && hi.is_finite()) || hi < lo {
        return Vec::new();
    }
    let max = max.max(2);
    let span = (hi - lo).max(hi.abs().max(lo.abs()) * 1e-3).max(f64::MIN_POSITIVE);
    let mut k = (span / max as f64).log10().floor() as i32 - 1;
    loop {
        for m in [1i64, 2, 5] {
            let step = decimal(m, k);
            let (a, b) = ((lo / step - 1e-9).ceil() as i64, (hi / step + 1e-9).floor() as i64);
            if b - a < max as i64 {
                // i × step, written as an exact decimal: (i·m) × 10^k.
                return (a..=b).map(|i| tick(decimal(i * m, k))).filter(|(v, _)| *v >= lo && *v <= hi).collect();
            }
        }
        k += 1;
    }
}

/// Ticks of a log axis from `lo` to `hi` (both above 0), at their true values: at 1, 2 and
/// 5 × 10^k when at most 10 of them fall in the range, else at the powers of ten (every
/// second, third… decade on wide ranges); on a range too narrow for two of those, at 1 to 9
/// × 10^k, and failing that at round values as on a linear axis.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<Tick> {
    if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
        return Vec::new();
    }
    let (k0, k1) = (lo.log10().floor() as i32 - 1, hi.log10().ceil() as i32 + 1);
    let within = |mantissas: &[i64], every: i32| -> Vec<Tick> {
        (k0..=k1)
            .filter(|k| k.rem_euclid(every) == 0)
            .flat_map(|k| mantissas.iter().map(move |&m| decimal(m, k)))
            .filter(|v| *v >= lo && *v <= hi)
            .map(tick)
            .collect()
    };
    let ticks = within(&[1, 2, 5], 1);
    if ticks.len() > MAX_TICKS {
        let mut every = 1;
        loop {
            let ticks = within(&[1], every);
            if ticks.len() <= MAX_TICKS {
                return ticks;
            }
            every += 1;
        }
    }
    if ticks.len() >= 2 {
        return ticks;
    }
    let ticks = within(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 1);
    if ticks.len() >= 2 {
        return ticks;
    }
    linear_ticks(lo, hi, 5)
}

/// A corner of a plot area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corner {
    /// Top right.
    UpperRight,
    /// Bottom right.
    LowerRight,
    /// Top left.
    UpperLeft,
    /// Bottom left.
    LowerLeft,
}

impl Corner {
    /// The corners in the order a legend tries them.
    pub const ALL: [Corner; 4] = [Corner::UpperRight, Corner::LowerRight, Corner::UpperLeft, Corner::LowerLeft];

    /// The box of a legend of `size` in this corner, `(x0, y0, x1, y1)` as fractions of the
    /// plot area (x from the left, y from the bottom), `gap` from its edges.
    pub fn rect(self, size: (f64, f64), gap: f64) -> (f64, f64, f64, f64) {
        let (w, h) = size;
        let (x0, x1) = match self {
            Corner::UpperLeft | Corner::LowerLeft => (gap, gap + w),
            Corner::UpperRight | Corner::LowerRight => (1.0 - gap - w, 1.0 - gap),
        };
        let (y0, y1) = match self {
            Corner::LowerLeft | Corner::LowerRight => (gap, gap + h),
            Corner::UpperLeft | Corner::UpperRight => (1.0 - gap - h, 1.0 - gap),
        };
        (x0, y0, x1, y1)
    }
}

/// Where a legend goes: its corner, and the share of the plot area's height the data may fill
/// (1 when a corner is clear; less when the axis needs headroom above the data for it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegendPlace {
    /// The corner it sits in.
    pub corner: Corner,
    /// The y axis' range is stretched upwards so that the data fills this share of it.
    pub data_height: f64,
}

/// Space left between a legend and the edges of the plot area, and around it.
pub const LEGEND_GAP: f64 = 0.03;

/// Whether the polyline `line` passes through `rect` (grown by `pad`), checked at points
/// along every segment no further apart than a fiftieth of the area.
fn crosses(line: &[(f64, f64)], rect: (f64, f64, f64, f64), pad: f64) -> bool {
    let inside = |(x, y): (f64, f64)| x >= rect.0 - pad && x <= rect.2 + pad && y >= rect.1 - pad && y <= rect.3 + pad;
    if line.len() == 1 {
        return inside(line[0]);
    }
    line.windows(2).any(|w| {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        let steps = (((x1 - x0).abs().max((y1 - y0).abs())) * 50.0).ceil().clamp(1.0, 10_000.0) as usize;
        (0..=steps).any(|i| {
            let t = i as f64 / steps as f64;
            inside((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
        })
    })
}

/// A corner for a legend of `size` (fractions of the plot area's width and height) that none
/// of `lines` (polylines in fractions of the plot area, x from the left, y from the bottom)
/// passes through, in the order of [`Corner::ALL`]. When every corner is crossed, the upper
/// corner that no vertical line (a line whose points share one x) crosses, with the data
/// squeezed below the legend (`data_height` below 1).
pub fn place_legend(lines: &[Vec<(f64, f64)>], size: (f64, f64)) -> LegendPlace {
    let pad = LEGEND_GAP / 2.0;
    let clear = |corner: Corner| lines.iter().all(|l| !crosses(l, corner.rect(size, LEGEND_GAP), pad));
    if let Some(corner) = Corner::ALL.into_iter().find(|&c| clear(c)) {
        return LegendPlace { corner, data_height: 1.0 };
    }
    let vertical = |l: &Vec<(f64, f64)>| l.len() > 1 && l.iter().all(|p| p.0 == l[0].0);
    let upright = [Corner::UpperRight, Corner::UpperLeft];
    let corner = upright
        .into_iter()
        .find(|c| lines.iter().filter(|l| vertical(l)).all(|l| !crosses(l, c.rect(size, LEGEND_GAP), pad)))
        .unwrap_or(Corner::UpperRight);
    LegendPlace { corner, data_height: (1.0 - size.1 - 2.0 * LEGEND_GAP - pad).max(0.3) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ticks: &[Tick]) -> Vec<&str> {
        ticks.iter().map(|(_, l)| l.as_str()).collect()
    }

    /// Every label parses back to its position.
    fn round_trips(ticks: &[Tick]) {
        for (v, label) in ticks {
            assert_eq!(label.parse::<f64>().ok(), Some(*v), "{label} at {v}");
        }
    }

    #[test]
    fn epoch_ticks_are_integers_without_repeats() {
        assert_eq!(labels(&epoch_ticks(1, 1)), ["1"]);
        assert_eq!(labels(&epoch_ticks(1, 2)), ["1", "2"]);
        assert_eq!(labels(&epoch_ticks(1, 10)), ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]);
        assert_eq!(labels(&epoch_ticks(1, 11)), ["2", "4", "6", "8", "10"]);
        assert_eq!(labels(&epoch_ticks(1, 37)), ["5", "10", "15", "20", "25", "30", "35"]);
        assert_eq!(labels(&epoch_ticks(4, 6)), ["4", "5", "6"]);
        assert_eq!(labels(&epoch_ticks(1, 10000)).len(), 10);
        assert_eq!(labels(&epoch_ticks(1, 10000))[0], "1000");
        assert!(epoch_ticks(3, 2).is_empty());
        for last in 1..=10000 {
            let ticks = epoch_ticks(1, last);
            assert!(!ticks.is_empty() && ticks.len() <= 10, "{last}: {ticks:?}");
            assert!(ticks.windows(2).all(|w| w[0].0 < w[1].0), "{last}: {ticks:?}");
            assert!(ticks.iter().all(|(v, _)| v.fract() == 0.0 && *v >= 1.0 && *v <= last as f64));
            round_trips(&ticks);
        }
    }

    #[test]
    fn log_ticks_stand_at_their_true_values() {
        // The search's range 1e-4..3e-2: 1, 2, 5 × 10^k.
        let ticks = log_ticks(1e-4, 3e-2);
        assert_eq!(labels(&ticks), ["1e-4", "2e-4", "5e-4", "0.001", "0.002", "0.005", "0.01", "0.02"]);
        round_trips(&ticks);
        // A narrow range around 1.43e-4 and 1.58e-4 gets no tick labelled 2e-4.
        let ticks = log_ticks(1.3e-4, 1.7e-4);
        assert!(ticks.len() >= 2, "{ticks:?}");
        assert!(!labels(&ticks).contains(&"2e-4"), "{ticks:?}");
        round_trips(&ticks);
        // The range test's default 1e-7..10: powers of ten, every second decade at most 10.
        let ticks = log_ticks(1e-7, 10.0);
        assert!(ticks.len() <= 10 && ticks.len() >= 4, "{ticks:?}");
        assert!(labels(&ticks).contains(&"1e-6") && labels(&ticks).contains(&"0.01"), "{ticks:?}");
        round_trips(&ticks);
        let ticks = log_ticks(1e-12, 1e12);
        assert!(ticks.len() <= 10 && ticks.len() >= 2, "{ticks:?}");
        round_trips(&ticks);
        assert_eq!(labels(&log_ticks(0.3, 4.0)), ["0.5", "1", "2"]);
        assert!(log_ticks(0.0, 1.0).is_empty());
    }

    #[test]
    fn linear_ticks_are_round_and_inside() {
        assert_eq!(labels(&linear_ticks(0.0, 0.2, 5)), ["0", "0.05", "0.1", "0.15", "0.2"]);
        assert_eq!(labels(&linear_ticks(14.0, 70.0, 6)), ["20", "30", "40", "50", "60", "70"]);
        let ticks = linear_ticks(0.95, 0.9512, 5);
        assert!(ticks.len() >= 2, "{ticks:?}");
        round_trips(&ticks);
        round_trips(&linear_ticks(0.1, 0.7, 10));
    }

    #[test]
    fn legends_avoid_the_lines() {
        // Accuracy rising from the lower left: the upper right is taken, the lower right is clear.
        let rising = vec![(0.05, 0.05), (0.5, 0.9), (0.95, 0.95)];
        assert_eq!(place_legend(std::slice::from_ref(&rising), (0.3, 0.2)).corner, Corner::LowerRight);
        // Loss falling to the lower right: the upper right is clear.
        let falling = vec![(0.05, 0.95), (0.5, 0.2), (0.95, 0.05)];
        let place = place_legend(std::slice::from_ref(&falling), (0.3, 0.2));
        assert_eq!(place, LegendPlace { corner: Corner::UpperRight, data_height: 1.0 });
        // A line through every corner: headroom above the data, and not over the vertical line
        // at the right.
        let zigzag = vec![(0.0, 0.0), (0.25, 1.0), (0.5, 0.0), (0.75, 1.0), (1.0, 0.0)];
        let kept = vec![(0.9, 0.0), (0.9, 1.0)];
        let place = place_legend(&[zigzag, kept], (0.3, 0.2));
        assert_eq!(place.corner, Corner::UpperLeft);
        assert!(place.data_height < 0.8 && place.data_height > 0.5, "{place:?}");
    }
}
