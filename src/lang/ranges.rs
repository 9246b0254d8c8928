//! The range of every number the language takes: one constant per argument, used by the
//! parser (which refuses a number outside it, with a caret under it) and by the docs table
//! (which lists each statement's ranges in `help` and the README reference).

use std::fmt;

/// Where a number of the language must lie.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumRange {
    /// The argument's name in the statement's synopsis (`N`, `DEG`).
    pub name: &'static str,
    /// What it is, in words (`a batch size`).
    pub what: &'static str,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// Whether `min` itself is excluded.
    pub min_open: bool,
    /// Whether `max` itself is excluded.
    pub max_open: bool,
    /// Whether only whole numbers are accepted.
    pub integer: bool,
    /// Whether the number is a size in bytes (shown as `16.0 MiB`).
    pub bytes: bool,
}

const fn whole(name: &'static str, what: &'static str, min: f64, max: f64) -> NumRange {
    NumRange { name, what, min, max, min_open: false, max_open: false, integer: true, bytes: false }
}

const fn real(name: &'static str, what: &'static str, min: f64, max: f64) -> NumRange {
    NumRange { name, what, min, max, min_open: false, max_open: false, integer: false, bytes: false }
}

const fn open_max(r: NumRange) -> NumRange {
    NumRange { max_open: true, ..r }
}

const fn open_min(r: NumRange) -> NumRange {
    NumRange { min_open: true, ..r }
}

impl NumRange {
    /// Whether `x` lies in the range (and is whole where it must be).
    pub fn contains(&self, x: f64) -> bool {
        let above = if self.min_open { x > self.min } else { x >= self.min };
        let below = if self.max_open { x < self.max } else { x <= self.max };
        x.is_finite() && above && below && (!self.integer || x.fract() == 0.0)
    }

    /// The bounds in words: `from 1 to 65536`, `at least 0 and below 1`, `above 0 and at most 10`.
    pub fn bounds(&self) -> String {
        let show = |x: f64| if self.bytes { crate::budget::bytes(x as u64) } else { num(x) };
        let (low, high) = (show(self.min), show(self.max));
        match (self.min_open, self.max_open) {
            (false, false) => format!("from {low} to {high}"),
            (false, true) => format!("at least {low} and below {high}"),
            (true, false) => format!("above {low} and at most {high}"),
            (true, true) => format!("above {low} and below {high}"),
        }
    }
}

impl fmt::Display for NumRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.integer { "a whole number" } else { "a number" };
        write!(f, "{} ({kind} {})", self.what, self.bounds())
    }
}

/// A bound as written in docs: `65536`, `0.5`, `2^64-1`.
fn num(x: f64) -> String {
    if x >= u64::MAX as f64 {
        "2^64-1".into()
    } else {
        format!("{x}")
    }
}

/// `seed S`, and every `seed S` clause.
pub const SEED: NumRange = whole("S", "a seed", 0.0, u64::MAX as f64);
/// `show samples N`, `show mistakes N`.
pub const GRID_COUNT: NumRange = whole("N", "how many images to draw", 1.0, 1024.0);
/// `evaluate SPLIT N`: its first N images.
pub const EVAL_FIRST: NumRange = whole("N", "how many of the split's first images", 1.0, 1_000_000_000.0);
/// `predictions SPLIT N`: rows of the table.
pub const PREDICTION_ROWS: NumRange = whole("N", "how many rows", 1.0, 100_000.0);
/// A class number: `show samples N class K`, `filter classes`.
pub const CLASS: NumRange = whole("K", "a class number", 0.0, 255.0);
/// `split TRAIN/VAL/TEST`: each share.
pub const SHARE: NumRange = whole("TRAIN/VAL/TEST", "a percentage", 0.0, 100.0);
/// `split val PERCENT`.
pub const VAL_PERCENT: NumRange = whole("PERCENT", "the validation percentage of train", 1.0, 99.0);
/// `subset N per class`.
pub const PER_CLASS: NumRange = whole("N", "how many images per class", 1.0, 1_000_000.0);
/// `augment rotate DEG`.
pub const ROTATE: NumRange = real("DEG", "a rotation in degrees", 0.0, 180.0);
/// `augment shift FRAC`.
pub const SHIFT_FRACTION: NumRange = real("FRAC", "a shift as a fraction of the side", 0.0, 1.0);
/// `augment shift Npx`.
pub const SHIFT_PIXELS: NumRange = real("Npx", "a shift in pixels", 0.0, 256.0);
/// `augment scale A..B`: each end.
pub const SCALE: NumRange = real("A..B", "a zoom factor", 0.1, 10.0);
/// `augment shear DEG`.
pub const SHEAR: NumRange = real("DEG", "a shear angle in degrees", 0.0, 80.0);
/// `augment crop PAD`.
pub const CROP: NumRange = whole("PAD", "a padding in pixels", 0.0, 64.0);
/// `augment elastic ALPHA SIGMA`: the displacement scale.
pub const ELASTIC_ALPHA: NumRange = real("ALPHA", "the elastic displacement scale", 0.0, 1000.0);
/// `augment elastic ALPHA SIGMA`: the smoothing.
pub const ELASTIC_SIGMA: NumRange = real("SIGMA", "the elastic smoothing in pixels", 0.5, 50.0);
/// `augment noise STD`.
pub const NOISE: NumRange = real("STD", "a noise standard deviation (pixel scale 0..1)", 0.0, 1.0);
/// `augment erase P`.
pub const ERASE: NumRange = real("P", "an erasing probability", 0.0, 1.0);
/// `augment preview N`.
pub const PREVIEW: NumRange = whole("N", "how many images to preview", 1.0, 256.0);
/// `expand Nx`.
pub const EXPAND: NumRange = whole("N", "an expansion factor", 1.0, 1000.0);
/// `model convN`: filters.
pub const FILTERS: NumRange = whole("N", "a convolution's filter count", 1.0, 4096.0);
/// `model convN stride S`.
pub const STRIDE: NumRange = whole("S", "a convolution's stride", 1.0, 4.0);
/// `model denseN`: units.
pub const UNITS: NumRange = whole("N", "a dense layer's units", 1.0, 1_000_000.0);
/// `model dropout P`.
pub const DROPOUT: NumRange = open_max(real("P", "a dropout rate", 0.0, 1.0));
/// `optimizer ... lr X`, `body X`.
pub const LR: NumRange = open_min(real("X", "a learning rate", 0.0, 10.0));
/// `optimizer ... body X` (0 keeps the body where it is).
pub const BODY_LR: NumRange = real("X", "the body's learning rate", 0.0, 10.0);
/// `optimizer sgd momentum M`.
pub const MOMENTUM: NumRange = open_max(real("M", "a momentum", 0.0, 1.0));
/// `optimizer adamw decay W`.
pub const DECAY: NumRange = real("W", "a weight decay", 0.0, 1.0);
/// `schedule step every N`.
pub const STEP_EVERY: NumRange = whole("N", "epochs between decays", 1.0, 10_000.0);
/// `schedule step ... factor F`.
pub const STEP_FACTOR: NumRange = open_min(real("F", "a decay factor", 0.0, 1.0));
/// `batch N`.
pub const BATCH: NumRange = whole("N", "a batch size", 1.0, 65_536.0);
/// `ema D`: the moving average's decay.
pub const EMA: NumRange = open_max(real("D", "a moving average's decay", 0.0, 1.0));
/// `loss crossentropy smoothing S`.
pub const SMOOTHING: NumRange = open_max(real("S", "a label smoothing factor", 0.0, 1.0));
/// How many batches `find lr` trains.
pub const LR_STEPS: NumRange = whole("N", "how many batches the range test trains", 2.0, 100_000.0);
/// `fit N`.
pub const EPOCHS: NumRange = whole("N", "how many epochs", 1.0, 10_000.0);
/// `ensemble fit K N`.
pub const MEMBERS: NumRange = whole("K", "how many models the ensemble trains", 1.0, 64.0);
/// `fit N patience P`.
pub const PATIENCE: NumRange = whole("P", "a patience in epochs", 1.0, 10_000.0);
/// `threads N`.
pub const THREADS: NumRange = whole("N", "a thread count", 1.0, 256.0);
/// `head N`.
pub const HEAD: NumRange = whole("N", "the new output layer's classes", 2.0, 256.0);
/// `freeze N..M`: layer numbers.
pub const LAYER: NumRange = whole("N", "a layer number as `summary` shows it", 1.0, 1000.0);
/// `adapt lora rank R`.
pub const RANK: NumRange = whole("R", "the adapters' rank", 1.0, 4096.0);
/// `adapt lora ... alpha A`.
pub const ALPHA: NumRange = open_min(real("A", "the adapters' alpha", 0.0, 100_000.0));
/// `tune trials T`.
pub const TRIALS: NumRange = whole("T", "how many trials", 1.0, 1000.0);
/// `tune epochs E`.
pub const TUNE_EPOCHS: NumRange = whole("E", "the epochs of a trial", 1.0, 1000.0);
/// `memory SIZE`, in bytes.
pub const MEMORY: NumRange = NumRange {
    bytes: true,
    ..whole("SIZE", "a memory budget (K, M, G or T may follow)", 16.0 * 1024.0 * 1024.0, 1_125_899_906_842_624.0)
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_as_words() {
        assert_eq!(BATCH.to_string(), "a batch size (a whole number from 1 to 65536)");
        assert_eq!(DROPOUT.bounds(), "at least 0 and below 1");
        assert_eq!(LR.bounds(), "above 0 and at most 10");
        assert_eq!(SEED.bounds(), "from 0 to 2^64-1");
        assert_eq!(MEMORY.bounds(), "from 16.0 MiB to 1.0 PiB");
    }

    #[test]
    fn contains_respects_open_ends_and_wholeness() {
        assert!(DROPOUT.contains(0.0) && !DROPOUT.contains(1.0));
        assert!(!LR.contains(0.0) && LR.contains(10.0));
        assert!(!BATCH.contains(1.5) && !BATCH.contains(f64::NAN) && !ROTATE.contains(f64::INFINITY));
    }
}
