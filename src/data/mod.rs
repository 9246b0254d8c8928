//! The data operations: formats, fetching, transforms and splits. Knows nothing of the language.

pub mod augment;
pub mod checksum;
pub mod csv;
pub mod dataset;
pub mod error;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod load;
pub mod npz;
pub mod pickle;
pub mod preprocess;
pub mod saved;
pub mod split;
pub mod transform;

pub use dataset::{Dataset, ImageFormat, Images, Inconsistency, PixelScaling, Provenance, Split, SplitKind};
pub use error::{DataError, Result};
