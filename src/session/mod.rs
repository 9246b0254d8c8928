//! The interpreter: runs statements against the session's state and emits [`Event`]s.

mod event;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use event::{Event, Image, Progress, Table};

use crate::data::{self, Dataset, PixelScaling, SplitKind};
use crate::lang::{self, docs, LoadSource, NormalizeRange, ParseError, SplitName, SplitSpec, Statement, StatementKind};

/// A statement that could not run: what went wrong, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementError {
    /// Where the statement stands (line and column in its source).
    pub span: lang::Span,
    /// The statement's text.
    pub text: String,
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
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = |file: &Option<PathBuf>| file.as_ref().map(|p| format!("{}:", p.display())).unwrap_or_default();
        match self {
            RunError::Parse { file, error } => write!(f, "{}{error}", prefix(file)),
            RunError::Statement { file, error } => write!(f, "{}{error}", prefix(file)),
        }
    }
}

impl std::error::Error for RunError {}

/// An error inside one statement, before its position is attached.
type Failure = String;

/// The interpreter's state: the dataset, the seed, and what has been run.
pub struct Session {
    dataset: Option<Dataset>,
    seed: u64,
    /// Statements that ran successfully (for `:save`), in order.
    history: Vec<String>,
    /// Statements that produced the current dataset (for the manifest), since the last `load`.
    lineage: Vec<String>,
    interrupt: Arc<AtomicBool>,
}

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
            interrupt: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag a front end sets to interrupt a running statement (Ctrl-C, a kernel interrupt).
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.interrupt)
    }

    /// The loaded dataset, if any.
    pub fn dataset(&self) -> Option<&Dataset> {
        self.dataset.as_ref()
    }

    /// The statements that ran successfully, as a replayable script.
    pub fn history(&self) -> &[String] {
        &self.history
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
                other => other,
            })?;
        }
        Ok(())
    }

    /// Runs one statement.
    pub fn execute(&mut self, statement: &Statement, out: &mut dyn FnMut(Event)) -> Result<(), RunError> {
        self.interrupt.store(false, Ordering::SeqCst);
        if let StatementKind::Run(path) = &statement.kind {
            return self.run_file(statement, path, out);
        }
        match self.dispatch(&statement.kind, out) {
            Ok(()) => {
                if !matches!(statement.kind, StatementKind::Help(_)) {
                    self.history.push(statement.text.clone());
                }
                if changes_data(&statement.kind) {
                    if matches!(statement.kind, StatementKind::Load(_)) {
                        self.lineage.clear();
                    }
                    self.lineage.push(statement.text.clone());
                }
                Ok(())
            }
            Err(message) => Err(RunError::Statement {
                file: None,
                error: StatementError { span: statement.span, text: statement.text.clone(), message },
            }),
        }
    }

    fn run_file(&mut self, statement: &Statement, path: &Path, out: &mut dyn FnMut(Event)) -> Result<(), RunError> {
        let source = std::fs::read_to_string(path).map_err(|e| RunError::Statement {
            file: None,
            error: StatementError {
                span: statement.span,
                text: statement.text.clone(),
                message: format!("cannot read {}: {e}", path.display()),
            },
        })?;
        self.run_source(&source, Some(path), out)
    }

    fn dataset_for(&mut self, what: &str) -> Result<&mut Dataset, Failure> {
        self.dataset.as_mut().ok_or_else(|| format!("{what} needs data: run `load mnist` (or another `load`) first"))
    }

    fn dispatch(&mut self, kind: &StatementKind, out: &mut dyn FnMut(Event)) -> Result<(), Failure> {
        match kind {
            StatementKind::Load(source) => self.load(source, out),
            StatementKind::Info => self.info(out),
            StatementKind::ShowSamples { count, split, class } => self.show_samples(*count, *split, *class, out),
            StatementKind::Normalize(range) => {
                let scaling = match range {
                    NormalizeRange::Unit => PixelScaling::Unit,
                    NormalizeRange::Symmetric => PixelScaling::Symmetric,
                };
                self.set_scaling(scaling, out)
            }
            StatementKind::Standardize => {
                let dataset = self.dataset_for("standardize")?;
                let scaling = data::transform::standard_scaling(dataset).map_err(|e| e.to_string())?;
                if let PixelScaling::Standard { mean, std } = scaling {
                    out(Event::Text(format!(
                        "train mean {mean:.4}, std {std:.4} (pixels in 0..1); applied to every split"
                    )));
                }
                self.set_scaling(scaling, out)
            }
            StatementKind::OneHot => {
                let dataset = self.dataset_for("onehot")?;
                dataset.onehot = true;
                out(Event::Text(format!("labels one-hot encoded: {} columns", dataset.classes.len())));
                Ok(())
            }
            StatementKind::Split(spec) => self.split(spec, out),
            StatementKind::FilterClasses(classes) => {
                let dataset = self.dataset_for("filter")?;
                data::split::filter_classes(dataset, classes).map_err(|e| e.to_string())?;
                out(Event::Text(format!("kept classes {}: {} images", class_names(dataset, classes), dataset.len())));
                Ok(())
            }
            StatementKind::Subset { per_class, seed } => {
                let seed = seed.unwrap_or(self.seed);
                let dataset = self.dataset_for("subset")?;
                data::split::subset_per_class(dataset, *per_class, seed).map_err(|e| e.to_string())?;
                let n = dataset.split(SplitKind::Train).map_or(0, |s| s.len());
                out(Event::Text(format!("train split: {n} images ({per_class} per class, seed {seed})")));
                Ok(())
            }
            StatementKind::Save { dir, format } => self.save(dir, *format, out),
            StatementKind::Seed(seed) => {
                self.seed = *seed;
                out(Event::Text(format!("seed {seed}")));
                Ok(())
            }
            StatementKind::Help(topic) => help(topic.as_deref(), out),
            StatementKind::Print(text) => {
                out(Event::Text(text.clone()));
                Ok(())
            }
            StatementKind::Run(_) => unreachable!("run is handled by execute"),
        }
    }

    fn load(&mut self, source: &LoadSource, out: &mut dyn FnMut(Event)) -> Result<(), Failure> {
        let digits = data::dataset::digit_classes;
        let dataset = match source {
            LoadSource::Named { name, from } => {
                let named = match name {
                    lang::DatasetName::Mnist => data::fetch::Named::Mnist,
                    lang::DatasetName::FashionMnist => data::fetch::Named::FashionMnist,
                };
                load_named(named, from.as_deref(), out)?
            }
            LoadSource::Idx { images, labels } => {
                data::load::load_idx_pair(images, labels, "idx", digits()).map_err(|e| e.to_string())?
            }
            LoadSource::Npz(path) => data::npz::read_mnist_npz(path, "npz", digits()).map_err(|e| e.to_string())?,
            LoadSource::Pkl(path) => data::pickle::read_mnist_pkl(path).map_err(|e| e.to_string())?,
            LoadSource::Csv(path) => {
                data::csv::read_kaggle_csv(path, "csv", digits(), 28, 28).map_err(|e| e.to_string())?
            }
            LoadSource::Dir(path) => {
                if !path.exists() {
                    return Err(format!(
                        "no folder {}: `load` takes mnist, fashion-mnist, idx, npz, pkl, csv or a folder written by `save`",
                        path.display()
                    ));
                }
                data::saved::load_saved(path).map_err(|e| e.to_string())?
            }
        };
        let counts: Vec<String> = dataset.splits.iter().map(|(k, s)| format!("{k} {}", s.len())).collect();
        out(Event::Text(format!(
            "loaded {}: {} images of {}×{} ({}), {} classes",
            dataset.name,
            dataset.len(),
            dataset.rows,
            dataset.cols,
            counts.join(", "),
            dataset.classes.len()
        )));
        self.dataset = Some(dataset);
        Ok(())
    }

    fn info(&mut self, out: &mut dyn FnMut(Event)) -> Result<(), Failure> {
        let dataset = self.dataset_for("info")?;
        let mut table = Table::new(
            Some(format!("{} — {} ({})", dataset.name, dataset.provenance.description, dataset.scaling.describe())),
            &["split", "count", "shape", "dtype", "min", "max", "mean", "std"],
        );
        let dtype = if dataset.scaling == PixelScaling::Raw { "uint8" } else { "uint8 → float32" };
        for (kind, split) in &dataset.splits {
            let stats = data::transform::pixel_stats(split, dataset.scaling);
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
            table.row(vec![
                kind.to_string(),
                split.len().to_string(),
                format!("{}×{}×{}", split.len(), dataset.rows, dataset.cols),
                dtype.to_string(),
                f(stats.map(|s| s.min)),
                f(stats.map(|s| s.max)),
                f(stats.map(|s| s.mean)),
                f(stats.map(|s| s.std)),
            ]);
        }
        out(Event::Table(table));
        out(Event::Table(class_table(dataset, "class histogram")));
        if dataset.onehot {
            out(Event::Text(format!("labels: one-hot, {} columns", dataset.classes.len())));
        }
        Ok(())
    }

    fn show_samples(
        &mut self,
        count: usize,
        split: Option<SplitName>,
        class: Option<u32>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), Failure> {
        let kind = split.map(split_kind).unwrap_or(SplitKind::Train);
        let dataset = self.dataset_for("show samples")?;
        let data = dataset.split(kind).ok_or_else(|| format!("there is no {kind} split (run `split` first?)"))?;
        if let Some(c) = class {
            if c as usize >= dataset.classes.len() {
                return Err(format!("class {c} does not exist: classes are 0-{}", dataset.classes.len() - 1));
            }
        }
        let picked: Vec<usize> =
            (0..data.len()).filter(|&i| class.is_none_or(|c| data.labels[i] as u32 == c)).take(count).collect();
        if picked.is_empty() {
            return Err(format!("no {kind} image matches"));
        }
        let image_len = dataset.image_len();
        let images: Vec<&[u8]> = picked.iter().map(|&i| data.image(i, image_len)).collect();
        let captions: Vec<String> = picked.iter().map(|&i| dataset.classes[data.labels[i] as usize].clone()).collect();
        let columns = (picked.len() as f64).sqrt().ceil() as usize;
        let png = crate::plot::image_grid_png(&images, dataset.rows, dataset.cols, &captions, columns);
        out(Event::Image(Image {
            name: "samples".into(),
            title: format!("{} {kind} samples", picked.len()),
            png,
            svg: None,
        }));
        Ok(())
    }

    fn set_scaling(&mut self, scaling: PixelScaling, out: &mut dyn FnMut(Event)) -> Result<(), Failure> {
        let dataset = self.dataset_for("normalize")?;
        dataset.scaling = scaling;
        let stats = dataset.split(SplitKind::Train).or_else(|| dataset.splits.values().next());
        let range = stats
            .and_then(|s| data::transform::pixel_stats(s, scaling))
            .map(|s| format!("; values now {:.4}..{:.4}, mean {:.4}, std {:.4}", s.min, s.max, s.mean, s.std))
            .unwrap_or_default();
        out(Event::Text(format!("pixels scaled as {}{range}", scaling.describe())));
        Ok(())
    }

    fn split(&mut self, spec: &SplitSpec, out: &mut dyn FnMut(Event)) -> Result<(), Failure> {
        let session_seed = self.seed;
        let dataset = self.dataset_for("split")?;
        let (title, seed) = match spec {
            SplitSpec::Percent { train, val, test, seed } => {
                let seed = seed.unwrap_or(session_seed);
                data::split::split_percent(dataset, [*train, *val, *test], seed).map_err(|e| e.to_string())?;
                (format!("split {train}/{val}/{test}, stratified"), seed)
            }
            SplitSpec::Validation { percent, seed } => {
                let seed = seed.unwrap_or(session_seed);
                data::split::split_validation(dataset, *percent, seed).map_err(|e| e.to_string())?;
                (format!("validation: {percent}% of train, stratified"), seed)
            }
        };
        if dataset.scaling != PixelScaling::Raw {
            if let PixelScaling::Standard { .. } = dataset.scaling {
                dataset.scaling = data::transform::standard_scaling(dataset).map_err(|e| e.to_string())?;
                out(Event::Warning("standardization recomputed on the new train split".into()));
            }
        }
        out(Event::Table(class_table(dataset, &format!("{title} (seed {seed})"))));
        let dups = data::split::cross_split_duplicates(dataset);
        let text: Vec<String> = dups.iter().map(|(a, b, n)| format!("{a}/{b} {n}")).collect();
        out(Event::Text(format!("byte-identical images in two splits: {}", text.join(", "))));
        Ok(())
    }

    fn save(&mut self, dir: &Path, format: lang::SaveFormat, out: &mut dyn FnMut(Event)) -> Result<(), Failure> {
        let format = match format {
            lang::SaveFormat::Idx => data::saved::SaveFormat::Idx,
            lang::SaveFormat::Npz => data::saved::SaveFormat::Npz,
            lang::SaveFormat::Csv => data::saved::SaveFormat::Csv,
            lang::SaveFormat::Png => data::saved::SaveFormat::Png,
        };
        let input = data::saved::ManifestInput { statements: self.lineage.clone(), seed: Some(self.seed) };
        let interrupt = Arc::clone(&self.interrupt);
        let dataset = self.dataset_for("save")?;
        let manifest =
            data::saved::save_dataset(dir, dataset, format, &input, &interrupt).map_err(|e| e.to_string())?;
        out(Event::Text(format!(
            "saved {} images to {} ({} files and manifest.json)",
            dataset.len(),
            dir.display(),
            manifest.files.len()
        )));
        Ok(())
    }
}

/// Loads a named dataset: an explicit folder, else the cache, else `~/.keras/datasets/mnist.npz`,
/// else fetched.
fn load_named(named: data::fetch::Named, from: Option<&Path>, out: &mut dyn FnMut(Event)) -> Result<Dataset, Failure> {
    let (name, classes) = match named {
        data::fetch::Named::Mnist => ("mnist", data::dataset::digit_classes()),
        data::fetch::Named::FashionMnist => ("fashion-mnist", data::dataset::fashion_classes()),
    };
    if let Some(dir) = from {
        let description = format!("{name} IDX files in {}", dir.display());
        return data::load::load_official(dir, name, classes, &description).map_err(|e| e.to_string());
    }
    let cached = data::fetch::is_cached(&named.files(), &data::fetch::cache_dir().join(named.name()));
    if !cached && named == data::fetch::Named::Mnist {
        if let Some(npz) = dirs::home_dir().map(|h| h.join(".keras/datasets/mnist.npz")).filter(|p| p.is_file()) {
            out(Event::Text(format!("reading Keras's copy {}", npz.display())));
            return data::npz::read_mnist_npz(&npz, name, classes).map_err(|e| e.to_string());
        }
    }
    let dir =
        data::fetch::fetch(named, &mut |line: &str| out(Event::Text(line.to_string()))).map_err(|e| e.to_string())?;
    let description = format!("{name} (official files, verified, cached in {})", dir.display());
    data::load::load_official(&dir, name, classes, &description).map_err(|e| e.to_string())
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
    )
}

fn split_kind(name: SplitName) -> SplitKind {
    match name {
        SplitName::Train => SplitKind::Train,
        SplitName::Val => SplitKind::Val,
        SplitName::Test => SplitKind::Test,
    }
}

fn class_names(dataset: &Dataset, classes: &[u32]) -> String {
    classes.iter().map(|&c| dataset.classes[c as usize].clone()).collect::<Vec<_>>().join(", ")
}

/// Per-class counts and shares of every split.
fn class_table(dataset: &Dataset, title: &str) -> Table {
    let mut header = vec!["class"];
    let names: Vec<String> = dataset.splits.keys().map(|k| k.to_string()).collect();
    let share_names: Vec<String> = names.iter().map(|n| format!("{n} %")).collect();
    for (n, s) in names.iter().zip(&share_names) {
        header.push(n);
        header.push(s);
    }
    let mut table = Table::new(Some(title.to_string()), &header);
    let counts: Vec<Vec<usize>> = dataset.splits.values().map(|s| s.class_counts(dataset.classes.len())).collect();
    let totals: Vec<usize> = dataset.splits.values().map(|s| s.len()).collect();
    for (c, name) in dataset.classes.iter().enumerate() {
        if counts.iter().all(|col| col[c] == 0) {
            continue;
        }
        let mut row = vec![name.clone()];
        for (col, total) in counts.iter().zip(&totals) {
            row.push(col[c].to_string());
            row.push(format!("{:.2}", 100.0 * col[c] as f64 / (*total).max(1) as f64));
        }
        table.row(row);
    }
    let mut row = vec!["total".to_string()];
    for total in &totals {
        row.push(total.to_string());
        row.push("100.00".into());
    }
    table.row(row);
    table
}

fn help(topic: Option<&str>, out: &mut dyn FnMut(Event)) -> Result<(), Failure> {
    match topic {
        None => {
            let mut table = Table::new(Some("statements (`help NAME` for one)".into()), &["statement", "what it does"]);
            for doc in docs::STATEMENTS {
                table.row(vec![doc.synopsis[0].to_string(), doc.summary.to_string()]);
            }
            out(Event::Table(table));
            Ok(())
        }
        Some(word) => match docs::lookup(word) {
            Some(doc) => {
                out(Event::Text(docs::help_text(doc)));
                Ok(())
            }
            None => {
                let hint = lang::parser::closest(word, docs::keywords())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                Err(format!("no statement `{word}`{hint}"))
            }
        },
    }
}
