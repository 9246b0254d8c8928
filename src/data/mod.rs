//! The data operations: formats, fetching, transforms and splits. Knows nothing of the language.

pub mod checksum;
pub mod dataset;
pub mod error;
pub mod fetch;
pub mod idx;
pub mod pickle;

pub use dataset::{Dataset, PixelScaling, Provenance, Split, SplitKind};
pub use error::{DataError, Result};
pub mod load;
pub mod split;
pub mod transform;
