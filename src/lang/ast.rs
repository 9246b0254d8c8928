//! The syntax tree: one [`Statement`] per source line, each with its [`Span`].

use std::fmt;
use std::path::PathBuf;

/// Where a statement (or a part of it) stands in its source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// 1-based line number in the source.
    pub line: usize,
    /// 1-based column (in characters) of the first character.
    pub col: usize,
    /// Length in characters.
    pub len: usize,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One parsed statement with its source text and position.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// What the statement asks for.
    pub kind: StatementKind,
    /// Where it stands in the source.
    pub span: Span,
    /// The statement's own text, trimmed, without a trailing comment.
    pub text: String,
}

/// A named split of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SplitName {
    /// The training split.
    Train,
    /// The validation split.
    Val,
    /// The test split.
    Test,
}

impl SplitName {
    /// All split names, in their canonical order.
    pub const ALL: [SplitName; 3] = [SplitName::Train, SplitName::Val, SplitName::Test];

    /// The lowercase name used in statements and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Val => "val",
            SplitName::Test => "test",
        }
    }

    /// Parses a split name as written in statements (`validation` is accepted for `val`).
    pub fn from_word(word: &str) -> Option<SplitName> {
        match word {
            "train" => Some(SplitName::Train),
            "val" | "valid" | "validation" => Some(SplitName::Val),
            "test" => Some(SplitName::Test),
            _ => None,
        }
    }
}

impl fmt::Display for SplitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dataset known by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetName {
    /// Handwritten digits (LeCun et al.).
    Mnist,
    /// Zalando's clothing images in MNIST's format.
    FashionMnist,
}

impl DatasetName {
    /// The name as written in statements.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
        }
    }
}

/// Where `load` reads from.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadSource {
    /// A named dataset, from the cache or fetched; `from` points at a folder holding its files.
    Named { name: DatasetName, from: Option<PathBuf> },
    /// A pair of IDX files (optionally gzip-compressed).
    Idx { images: PathBuf, labels: PathBuf },
    /// A Keras `mnist.npz`.
    Npz(PathBuf),
    /// A deeplearning.net `mnist.pkl.gz`.
    Pkl(PathBuf),
    /// A Kaggle digit-recognizer CSV.
    Csv(PathBuf),
    /// A folder written by `save`.
    Dir(PathBuf),
}

/// The target range of `normalize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormalizeRange {
    /// Pixels to [0, 1].
    Unit,
    /// Pixels to [-1, 1].
    Symmetric,
}

/// How `split` divides the data.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitSpec {
    /// Pool every loaded image and divide it by these percentages (train/val/test).
    Percent { train: u32, val: u32, test: u32, seed: Option<u64> },
    /// Keep the test split; carve `percent` of train into a validation split.
    Validation { percent: u32, seed: Option<u64> },
}

/// The file format `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveFormat {
    /// IDX files, gzip-compressed like the official distribution.
    #[default]
    Idx,
    /// One `.npz` per dataset with Keras-style keys.
    Npz,
    /// Kaggle-style CSV, one file per split.
    Csv,
    /// One PNG per image in `split/class/` folders.
    Png,
}

impl SaveFormat {
    /// The name as written in statements.
    pub fn as_str(self) -> &'static str {
        match self {
            SaveFormat::Idx => "idx",
            SaveFormat::Npz => "npz",
            SaveFormat::Csv => "csv",
            SaveFormat::Png => "png",
        }
    }
}

/// What a statement asks the session to do.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    /// `load ...`
    Load(LoadSource),
    /// `info`
    Info,
    /// `show samples N [SPLIT] [class K]`
    ShowSamples { count: usize, split: Option<SplitName>, class: Option<u32> },
    /// `normalize [-1..1]`
    Normalize(NormalizeRange),
    /// `standardize`
    Standardize,
    /// `onehot`
    OneHot,
    /// `split ...`
    Split(SplitSpec),
    /// `filter classes A-B` or `filter classes 1,3,5`
    FilterClasses(Vec<u32>),
    /// `subset N per class [seed S]`
    Subset { per_class: usize, seed: Option<u64> },
    /// `save DIR [as FORMAT]`
    Save { dir: PathBuf, format: SaveFormat },
    /// `seed S`
    Seed(u64),
    /// `help [STATEMENT]`
    Help(Option<String>),
    /// `run FILE`
    Run(PathBuf),
    /// `print "text"`
    Print(String),
}
