//! The shape of the data flowing between layers.

/// The shape of one example between two layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Channels × height × width.
    Image(usize, usize, usize),
    /// A flat feature vector.
    Flat(usize),
}

impl Shape {
    /// Keras-style text, channels last: `(None, 26, 26, 32)` or `(None, 128)`.
    pub fn keras(&self) -> String {
        match self {
            Shape::Image(c, h, w) => format!("(None, {h}, {w}, {c})"),
            Shape::Flat(n) => format!("(None, {n})"),
        }
    }

    /// Number of values per example.
    pub fn size(&self) -> usize {
        match self {
            Shape::Image(c, h, w) => c.saturating_mul(*h).saturating_mul(*w),
            Shape::Flat(n) => *n,
        }
    }

    /// What batch normalization normalizes over: the channels of an image, the values of a vector.
    pub fn features(&self) -> usize {
        match *self {
            Shape::Image(c, _, _) => c,
            Shape::Flat(n) => n,
        }
    }
}
