//! The data operations: formats, fetching, transforms and splits. Knows nothing of the language.

pub mod augment;
pub mod checksum;
pub mod dataset;
pub mod error;
pub mod idx;

pub use dataset::{Dataset, PixelScaling, Provenance, Split, SplitKind};
pub use error::{DataError, Result};
