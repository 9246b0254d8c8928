//! Why a statement fails: the session's own refusals, and each layer's typed error as it came.

use crate::budget::BudgetError;
use crate::data::DataError;
use crate::model::ModelError;
use crate::plot::PlotError;
use crate::write::WriteError;

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The statement cannot run now or with these arguments: no data or model yet, a class or a
    /// layer that does not exist, a setting that does not fit the model. The message says what to do.
    #[error("{0}")]
    Usage(String),
    /// Reading, writing, fetching or transforming data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Building, training, saving or loading a model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Drawing a figure failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// A size beyond the memory budget.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// A file or folder that must not be written (a device, FIFO, the data cache) or could not be.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl From<String> for SessionError {
    fn from(message: String) -> SessionError {
        SessionError::Usage(message)
    }
}

impl From<&str> for SessionError {
    fn from(message: &str) -> SessionError {
        SessionError::Usage(message.to_string())
    }
}

impl SessionError {
    /// Which kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SessionError::Data(DataError::Write(_)) | SessionError::Model(ModelError::Write(_)) => ErrorKind::Write,
            SessionError::Usage(_) => ErrorKind::Usage,
            SessionError::Data(_) => ErrorKind::Data,
            SessionError::Model(_) => ErrorKind::Model,
            SessionError::Plot(_) => ErrorKind::Plot,
            SessionError::Budget(_) => ErrorKind::Budget,
            SessionError::Write(_) => ErrorKind::Write,
        }
    }
}

/// The kind of a failed statement, as front ends name it (the Jupyter kernel's `ename`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The statement cannot run now or with these arguments.
    Usage,
    /// A data operation failed.
    Data,
    /// A model operation failed.
    Model,
    /// Drawing failed.
    Plot,
    /// Beyond the memory budget.
    Budget,
    /// A target that must not or could not be written.
    Write,
    /// The statement was interrupted before the program's end.
    Interrupted,
    /// A bug in mnistlab (a caught panic).
    Internal,
}

impl ErrorKind {
    /// The name front ends show, e.g. `DataError`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Usage => "UsageError",
            ErrorKind::Data => "DataError",
            ErrorKind::Model => "ModelError",
            ErrorKind::Plot => "PlotError",
            ErrorKind::Budget => "BudgetError",
            ErrorKind::Write => "WriteError",
            ErrorKind::Interrupted => "Interrupted",
            ErrorKind::Internal => "InternalError",
        }
    }
}
