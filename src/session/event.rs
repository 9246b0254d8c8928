//! What the session emits. Front ends render each event their own way: the terminal prints
//! and writes files, the Jupyter kernel sends messages, evcxr shows them inline.

/// One piece of output.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Plain text, one or more lines.
    Text(String),
    /// Something the user should notice, though nothing failed.
    Warning(String),
    /// A table with a header row.
    Table(Table),
    /// A picture.
    Image(Image),
    /// Progress of a long operation.
    Progress(Progress),
}

/// A table of text cells.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// A caption shown above the table.
    pub title: Option<String>,
    /// Column names.
    pub header: Vec<String>,
    /// Rows of cells, each as long as the header.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names and no rows.
    pub fn new(title: Option<String>, header: &[&str]) -> Table {
        Table { title, header: header.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

/// A PNG image (and optionally the same figure as SVG).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// A short name, usable as a file stem (`samples`, `history`).
    pub name: String,
    /// A caption.
    pub title: String,
    /// PNG bytes.
    pub png: Vec<u8>,
    /// The same figure as SVG, when available.
    pub svg: Option<String>,
}

/// Progress of a long operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// What is in progress: later events of the same task update its display.
    pub task: Task,
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// Extra text, e.g. the running loss.
    pub message: String,
    /// True on the task's last event.
    pub finished: bool,
}

impl Progress {
    /// The task in words, e.g. `epoch 3/10`.
    pub fn label(&self) -> String {
        self.task.to_string()
    }
}

/// What a [`Progress`] event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// One epoch of a `fit`.
    FitEpoch {
        /// The session's training run, from 1 (as `compare` numbers it).
        run: u64,
        /// The epoch, from 1.
        epoch: u64,
        /// The epochs the run asked for.
        epochs: u64,
    },
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Task::FitEpoch { epoch, epochs, .. } => write!(f, "epoch {epoch}/{epochs}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fit_epoch_is_labelled_by_its_epoch() {
        let p = Progress {
            task: Task::FitEpoch { run: 2, epoch: 3, epochs: 10 },
            done: 1,
            total: 4,
            message: String::new(),
            finished: false,
        };
        assert_eq!(p.label(), "epoch 3/10");
    }
}
