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
    /// Units done (batches, steps).
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// The running measures in words, e.g. `loss: 0.2310 - accuracy: 0.9312`.
    pub message: String,
    /// Time since the task started.
    pub elapsed: std::time::Duration,
    /// Images processed since the task started, for the rate (0 where not counted).
    pub images: u64,
    /// True on the task's last event.
    pub finished: bool,
}

impl Progress {
    /// The task in words, e.g. `epoch 3/10`.
    pub fn label(&self) -> String {
        self.task.to_string()
    }

    /// The estimated time left, from the rate so far: `None` before the first unit is done
    /// and once the task is finished.
    pub fn eta(&self) -> Option<std::time::Duration> {
        if self.finished || self.done == 0 || self.done >= self.total {
            return None;
        }
        Some(self.elapsed.mul_f64((self.total - self.done) as f64 / self.done as f64))
    }

    /// Images per second so far: `None` where images are not counted or no time has passed.
    pub fn images_per_sec(&self) -> Option<f64> {
        let seconds = self.elapsed.as_secs_f64();
        (self.images > 0 && seconds > 0.0).then(|| self.images as f64 / seconds)
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
    /// One epoch of one trial of a `tune`.
    TrialEpoch {
        /// The trial's training run in the session, from 1 (as `compare` numbers it).
        run: u64,
        /// The trial, from 1.
        trial: u64,
        /// The trials of the search.
        trials: u64,
        /// The epoch, from 1.
        epoch: u64,
        /// The epochs each trial trains for.
        epochs: u64,
    },
    /// The learning-rate range test of `find lr` (its steps are the units).
    FindLr,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Task::FitEpoch { epoch, epochs, .. } => write!(f, "epoch {epoch}/{epochs}"),
            Task::TrialEpoch { trial, trials, epoch, epochs, .. } => {
                write!(f, "trial {trial}/{trials} epoch {epoch}/{epochs}")
            }
            Task::FindLr => write!(f, "find lr"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: u64, elapsed_ms: u64, images: u64, finished: bool) -> Progress {
        Progress {
            task: Task::FitEpoch { run: 2, epoch: 3, epochs: 10 },
            done,
            total: 4,
            message: String::new(),
            elapsed: std::time::Duration::from_millis(elapsed_ms),
            images,
            finished,
        }
    }

    #[test]
    fn tasks_are_labelled_in_words() {
        assert_eq!(progress(1, 0, 0, false).label(), "epoch 3/10");
        let trial = Task::TrialEpoch { run: 4, trial: 2, trials: 8, epoch: 1, epochs: 3 };
        assert_eq!(trial.to_string(), "trial 2/8 epoch 1/3");
        assert_eq!(Task::FindLr.to_string(), "find lr");
    }

    #[test]
    fn eta_and_rate_come_from_the_time_so_far() {
        // 1 of 4 units in 2 s: 3 more take 6 s.
        assert_eq!(progress(1, 2000, 64, false).eta(), Some(std::time::Duration::from_secs(6)));
        assert_eq!(progress(1, 2000, 64, false).images_per_sec(), Some(32.0));
        assert_eq!(progress(0, 2000, 0, false).eta(), None, "nothing done yet");
        assert_eq!(progress(4, 2000, 256, true).eta(), None, "finished");
        assert_eq!(progress(2, 2000, 0, false).images_per_sec(), None, "images not counted");
        assert_eq!(progress(2, 0, 10, false).images_per_sec(), None, "no time yet");
    }
}
