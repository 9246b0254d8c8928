//! The interpreter: runs statements against the session's state and emits [`Event`]s.
//!
//! `mod.rs` holds the state and the dispatch; the arms live in `prepare.rs` (data statements),
//! `train.rs` (model statements), `finetune.rs` (freezing, heads, LoRA), `runs.rs` (the record
//! of training runs, `compare`) and `tune.rs` (the hyperparameter search); `classes.rs` maps the
//! data's classes to the model's outputs, and `api.rs` is the typed side for Rust code (owned
//! values out, data and networks in).

mod api;
mod classes;
mod ensemble;
mod error;
mod event;
mod finetune;
mod prepare;
mod runs;
mod track;
mod train;
mod tune;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use error::{ErrorKind, SessionError};
pub use event::{Event, Image, Progress, Table, Task};

use crate::data::{augment::Pipeline, Dataset};
use crate::lang::{self, ParseError, Statement, StatementKind};

/// A statement that could not run: what went wrong, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementError {
    /// Where the statement stands (line and column in its source).
    pub span: lang::Span,
    /// The statement's text.
    pub text: String,
    /// What kind of failure it is.
    pub kind: ErrorKind,
    /// What went wrong and, where it helps, what to do.
    pub message: String,
}

impl fmt::Display for StatementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.span, self.text, self.message)
    }
}

/// Why a program (a script, a cell, a REPL line) stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// A line did not parse; nothing of the program ran.
    Parse {
        /// The file, for `run FILE` and scripts; `None` for typed input.
        file: Option<PathBuf>,
        /// The syntax error.
        error: ParseError,
    },
    /// A statement failed; the ones before it ran.
    Statement {
        /// The file, for `run FILE` and scripts.
        file: Option<PathBuf>,
        /// The failure.
        error: StatementError,
    },
    /// A statement hit a bug in mnistlab (a panic, caught); the session stays usable.
    Internal {
        /// The file, for `run FILE` and scripts.
        file: Option<PathBuf>,
        /// The statement and the panic's message, with a hint to report it.
        error: StatementError,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = |file: &Option<PathBuf>| file.as_ref().map(|p| format!("{}:", p.display())).unwrap_or_default();
        match self {
            RunError::Parse { file, error } => write!(f, "{}{error}", prefix(file)),
            RunError::Statement { file, error } | RunError::Internal { file, error } => {
                write!(f, "{}{error}", prefix(file))
            }
        }
    }
}

impl std::error::Error for RunError {}

impl RunError {
    /// The name of the failure's kind, as the kernel reports it (`ParseError`, `DataError`, …).
    pub fn kind_name(&self) -> &'static str {
        match self {
            RunError::Parse { .. } => "ParseError",
            RunError::Statement { error, .. } | RunError::Internal { error, .. } => error.kind.name(),
        }
    }
}

/// The augmentation in force: the pipeline and the statement that set it.
struct Augmentation {
    pipeline: Pipeline,
    statement: String,
}

/// The interpreter's state: data, augmentation, model, training settings, seed.
pub struct Session {
    dataset: Option<Dataset>,
    seed: u64,
    /// Statements that ran successfully (for `:save`), in order.
    history: Vec<String>,
    /// Statements that produced the current dataset (for the manifest), since the last `load`.
    lineage: Vec<String>,
    /// Whether `subset` has cut the train split since the last `load` (`split A/B/C` warns).
    subset_since_load: bool,
    interrupt: Arc<AtomicBool>,
    augmentation: Option<Augmentation>,
    training: train::TrainingState,
    /// The text of the statement being run.
    current_statement: String,
    /// The files of the `run` statements now running, outermost first (canonical paths).
    running: Vec<PathBuf>,
    /// The best settings of the last `tune`, for `tune apply`.
    tuned: Option<tune::Tuned>,
    /// Where each `fit` writes a TensorBoard run (`log tensorboard DIR`), if anywhere.
    log_dir: Option<PathBuf>,
    /// The columns `help` wraps its text to (the front end's terminal; 80 when unknown).
    text_width: usize,
}

/// The columns text is wrapped to when the front end does not say: a terminal's classic width.
pub const DEFAULT_TEXT_WIDTH: usize = 80;

/// How deeply `run FILE` statements may nest.
pub const MAX_RUN_DEPTH: usize = 16;

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    /// A session with no data and seed 0.
    pub fn new() -> Session {
        Session {
            dataset: None,
            seed: 0,
            history: Vec::new(),
            lineage: Vec::new(),
            subset_since_load: false,
            interrupt: Arc::new(AtomicBool::new(false)),
            augmentation: None,
            training: train::TrainingState::default(),
            current_statement: String::new(),
            running: Vec::new(),
            tuned: None,
            log_dir: None,
            text_width: DEFAULT_TEXT_WIDTH,
        }
    }

    /// Sets the columns `help` wraps its text to: a front end that knows its terminal's width
    /// sets it (at least 20 are used).
    pub fn set_text_width(&mut self, columns: usize) {
        self.text_width = columns.max(20);
    }

    /// The flag a front end sets to interrupt a running statement (Ctrl-C, a kernel interrupt).
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.interrupt)
    }

    /// The loaded dataset, if any.
    pub fn dataset(&self) -> Option<&Dataset> {
        self.dataset.as_ref()
    }

    /// Parses `source` (every line first) and runs its statements in order, stopping at the first error.
    pub fn run_source(
        &mut self,
        source: &str,
        file: Option<&Path>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), RunError> {
        let file = file.map(Path::to_path_buf);
        let statements = lang::parse_program(source).map_err(|error| RunError::Parse { file: file.clone(), error })?;
        for statement in &statements {
            self.execute(statement, out).map_err(|e| match e {
                // A nested `run FILE` already names its own file.
                RunError::Statement { file: None, error } => RunError::Statement { file: file.clone(), error },
                RunError::Internal { file: None, error } => RunError::Internal { file: file.clone(), error },
                other => other,
            })?;
            if self.interrupt.load(Ordering::SeqCst) && !std::ptr::eq(statement, statements.last().expect("non-empty"))
            {
                return Err(RunError::Statement {
                    file,
                    error: StatementError {
                        span: statement.span,
                        text: statement.text.clone(),
                        kind: ErrorKind::Interrupted,
                        message: "interrupted: the statements after this one did not run".into(),
                    },
                });
            }
        }
        Ok(())
    }

    /// Runs one statement. A panic inside it (a bug) is caught and reported as
    /// [`RunError::Internal`]; the session stays usable.
    pub fn execute(&mut self, statement: &Statement, out: &mut dyn FnMut(Event)) -> Result<(), RunError> {
        self.interrupt.store(false, Ordering::SeqCst);
        if let StatementKind::Run(path) = &statement.kind {
            return self.run_file(statement, path, out);
        }
        self.current_statement = statement.text.clone();
        let outcome = crate::guard::catch(|| {
            crate::guard::debug_panic(statement.text.split_whitespace().next().unwrap_or(""));
            self.dispatch(&statement.kind, out)
        });
        let error =
            |kind, message| StatementError { span: statement.span, text: statement.text.clone(), kind, message };
        match outcome {
            Ok(Ok(())) => {
                self.record(statement);
                Ok(())
            }
            Ok(Err(e)) => Err(RunError::Statement { file: None, error: error(e.kind(), e.to_string()) }),
            Err(panic) => Err(RunError::Internal {
                file: None,
                error: error(
                    ErrorKind::Internal,
                    format!(
                        "internal error: {panic}. This is a bug in mnistlab; the session goes on, but this \
                     statement's work may be partial. Please report it with the statement above."
                    ),
                ),
            }),
        }
    }

    /// Records a statement that ran: in the replayable history and, if it changed the data, the lineage.
    fn record(&mut self, statement: &Statement) {
        if !matches!(statement.kind, StatementKind::Help(_)) {
            self.history.push(statement.text.clone());
        }
        if changes_data(&statement.kind) {
            match statement.kind {
                StatementKind::Load(_) => {
                    self.lineage.clear();
                    self.subset_since_load = false;
                }
                StatementKind::Subset { .. } => self.subset_since_load = true,
                _ => {}
            }
            self.lineage.push(statement.text.clone());
        }
    }

    /// `run FILE`: refuses a chain deeper than [`MAX_RUN_DEPTH`] and a file that is already running.
    fn run_file(&mut self, statement: &Statement, path: &Path, out: &mut dyn FnMut(Event)) -> Result<(), RunError> {
        let fail = |kind, message: String| RunError::Statement {
            file: None,
            error: StatementError { span: statement.span, text: statement.text.clone(), kind, message },
        };
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let chain =
            || self.running.iter().chain([&canonical]).map(|p| p.display().to_string()).collect::<Vec<_>>().join(" → ");
        if self.running.contains(&canonical) {
            return Err(fail(ErrorKind::Usage, format!("`run` cycle: {} runs itself again", chain())));
        }
        if self.running.len() >= MAX_RUN_DEPTH {
            return Err(fail(ErrorKind::Usage, format!("`run` nested deeper than {MAX_RUN_DEPTH} files: {}", chain())));
        }
        let source = crate::budget::read_text(path).map_err(|e| fail(ErrorKind::Budget, e.to_string()))?;
        self.running.push(canonical);
        let result = self.run_source(&source, Some(path), out);
        self.running.pop();
        result
    }

    fn dataset_for(&mut self, what: &str) -> Result<&mut Dataset, SessionError> {
        self.dataset.as_mut().ok_or_else(|| {
            SessionError::Usage(format!("{what} needs data: run `load mnist` (or another `load`) first"))
        })
    }

    /// One arm per statement.
    fn dispatch(&mut self, kind: &StatementKind, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        use StatementKind as S;
        match kind {
            S::Load(source) => self.load(source, out),
            S::Info => self.info(out),
            S::ShowSamples { count, split, class } => self.show_samples(*count, *split, *class, out),
            S::Normalize(range) => self.normalize(*range, out),
            S::Standardize => self.standardize(out),
            S::OneHot => self.onehot(out),
            S::Split(spec) => self.split(spec, out),
            S::FilterClasses(classes) => self.filter_classes(classes, out),
            S::Subset { per_class, seed } => self.subset(*per_class, *seed, out),
            S::Save { dir, format } => self.save(dir, *format, out),
            S::Seed(seed) => {
                self.seed = *seed;
                out(Event::Text(format!("seed {seed}")));
                Ok(())
            }
            S::Help(topic) => prepare::help(topic.as_deref(), self.text_width, out),
            S::Print(text) => {
                out(Event::Text(text.clone()));
                Ok(())
            }
            S::Run(_) => unreachable!("run is handled by execute"),
            S::Augment(spec) => self.augment(spec, out),
            S::Expand(factor) => self.expand(*factor, out),
            S::Model(choice) => self.model(choice, out),
            S::Summary => self.summary(out),
            S::Optimizer(spec) => self.optimizer(spec, out),
            S::Schedule(kind) => self.schedule(*kind, out),
            S::Batch(size) => self.batch(*size, out),
            S::Memory(size) => self.memory(*size, out),
            S::Loss { smoothing } => self.loss(*smoothing, out),
            S::Ema(decay) => self.ema(*decay, out),
            S::Tta(on) => self.tta(*on, out),
            S::Ensemble(action) => self.ensemble(action, out),
            S::FindLr { start, end, steps } => self.find_lr(*start, *end, *steps, out),
            S::Fit { epochs, patience, checkpoint } => self.fit(*epochs, *patience, checkpoint.as_deref(), out),
            S::Resume(dir) => self.resume(dir, out),
            S::Log(dir) => self.log(dir.as_deref(), out),
            S::Evaluate { split, first } => self.evaluate(*split, *first, out),
            S::Predictions { split, count } => self.predictions(*split, *count, out),
            S::Plot(kind) => self.plot(*kind, out),
            S::ShowMistakes(count) => self.show_mistakes(*count, out),
            S::SaveModel(path) => self.save_model(path, out),
            S::SaveHistory(path) => self.save_history(path, out),
            S::LoadModel(path) => self.load_model(path, out),
            S::Predict(path) => self.predict(path, out),
            S::Device(kind) => self.device(*kind, out),
            S::Threads(n) => self.threads(*n, out),
            S::Precision(p) => self.precision(*p, out),
            S::Freeze(selection) => self.freeze(*selection, true, out),
            S::Unfreeze(selection) => self.freeze(*selection, false, out),
            S::Head(classes) => self.head(*classes, out),
            S::AdaptLora { rank, alpha } => self.adapt_lora(*rank, *alpha, out),
            S::Merge => self.merge(out),
            S::Compare => self.compare(out),
            S::ExportOnnx(path) => self.export_onnx(path, out),
            S::Tune(search) => self.tune(search, out),
            S::TuneApply => self.tune_apply(out),
        }
    }
}

/// Whether a statement changes the data (and so belongs in a saved dataset's manifest).
fn changes_data(kind: &StatementKind) -> bool {
    matches!(
        kind,
        StatementKind::Load(_)
            | StatementKind::Normalize(_)
            | StatementKind::Standardize
            | StatementKind::OneHot
            | StatementKind::Split(_)
            | StatementKind::FilterClasses(_)
            | StatementKind::Subset { .. }
            | StatementKind::Seed(_)
            | StatementKind::Expand(_)
    )
}
