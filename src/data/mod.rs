//! The data operations: formats, fetching, transforms and splits. Knows nothing of the language.

pub mod checksum;
pub mod csv;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod npz;
pub mod saved;

pub use dataset::{Dataset, PixelScaling, Provenance, Split, SplitKind};
pub use error::{DataError, Result};
