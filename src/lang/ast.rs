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
    /// `augment ...`
    Augment(AugmentSpec),
    /// `expand Nx`: the train split becomes N times its size (originals plus N-1 augmented copies).
    Expand(usize),
    /// `model ...`
    Model(ModelChoice),
    /// `summary`
    Summary,
    /// `optimizer adam|adamw|sgd [lr X] [momentum M] [decay W] [body X]`
    Optimizer(OptimizerSpec),
    /// `schedule constant|onecycle|cosine|step`
    Schedule(ScheduleKind),
    /// `batch N`
    Batch(usize),
    /// `memory [SIZE]`: show or set the memory budget (bytes).
    Memory(Option<u64>),
    /// `loss crossentropy [smoothing S]`
    Loss { smoothing: Option<f64> },
    /// `fit N [patience P]`
    Fit { epochs: usize, patience: Option<usize> },
    /// `evaluate [test|val|train]`
    Evaluate(Option<SplitName>),
    /// `plot history|confusion`
    Plot(PlotKind),
    /// `show mistakes N`
    ShowMistakes(usize),
    /// `save model PATH`
    SaveModel(PathBuf),
    /// `load model PATH`
    LoadModel(PathBuf),
    /// `predict PATH`
    Predict(PathBuf),
    /// `device cpu|cuda`
    Device(DeviceKind),
    /// `threads N`
    Threads(usize),
    /// `freeze conv|N..M|all but head`
    Freeze(LayerSelection),
    /// `unfreeze [all|conv|N..M|all but head]`
    Unfreeze(LayerSelection),
    /// `head N`: a fresh output layer for N classes.
    Head(usize),
    /// `adapt lora rank R [alpha A]`
    AdaptLora { rank: usize, alpha: Option<f64> },
    /// `merge`: fold LoRA adapters into the weights.
    Merge,
    /// `compare`: the table of this session's training runs.
    Compare,
}

/// Which layers `freeze` and `unfreeze` mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerSelection {
    /// Every layer.
    All,
    /// Every convolution and the batch norms among them.
    Conv,
    /// Layers `first..=last`, 1-based as `summary` numbers them.
    Range(usize, usize),
    /// Every layer except the output layer.
    AllButHead,
}

/// Flip axis of `augment flip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlipAxis {
    /// Mirror left-right.
    Horizontal,
    /// Mirror top-bottom.
    Vertical,
}

/// One operation of an `augment` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AugmentOp {
    /// `rotate DEG`: uniform in ±DEG degrees.
    Rotate(f64),
    /// `shift FRAC` (fraction of the side) or `shift Npx`.
    Shift { amount: f64, pixels: bool },
    /// `scale A..B`: uniform zoom factor.
    Scale(f64, f64),
    /// `shear DEG`.
    Shear(f64),
    /// `crop PAD`: pad, then a random crop back to size.
    Crop(u32),
    /// `flip h|v`.
    Flip(FlipAxis),
    /// `elastic ALPHA SIGMA` (Simard et al. 2003).
    Elastic { alpha: f64, sigma: f64 },
    /// `noise STD`: Gaussian noise in the 0..1 pixel scale.
    Noise(f64),
    /// `erase P`: random erasing with probability P.
    Erase(f64),
}

/// What an `augment` statement asks.
#[derive(Debug, Clone, PartialEq)]
pub enum AugmentSpec {
    /// Set the pipeline to these operations; `force` allows flips of digits; `nearest` sampling.
    Ops { ops: Vec<AugmentOp>, force: bool, nearest: bool },
    /// `augment off`
    Off,
    /// `augment` alone: show the pipeline.
    Show,
    /// `augment preview N`
    Preview(usize),
}

/// One layer word of a `model` statement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerWord {
    /// `convN`, `convNk5`, optionally followed by `same`.
    Conv { filters: usize, kernel: usize, same: bool },
    /// `pool`: 2×2 max pooling.
    MaxPool,
    /// `avgpool`: 2×2 average pooling.
    AvgPool,
    /// `bn`: batch normalization.
    BatchNorm,
    /// `dropout P`.
    Dropout(f64),
    /// `denseN` (ReLU).
    Dense(usize),
    /// `gap`: global average pooling.
    GlobalAvgPool,
}

/// The network a `model` statement asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChoice {
    /// A named recipe (`seed-small`, `seed-cnn`, `lenet5`, `strong`).
    Preset(String),
    /// A sequence of layers.
    Layers(Vec<LayerWord>),
}

/// Optimizer kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Adam.
    Adam,
    /// Adam with decoupled weight decay.
    AdamW,
    /// SGD, optionally with momentum.
    Sgd,
}

/// An `optimizer` statement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerSpec {
    /// Which optimizer.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: Option<f64>,
    /// SGD momentum.
    pub momentum: Option<f64>,
    /// Weight decay.
    pub decay: Option<f64>,
    /// Learning rate of the non-head layers (fine-tuning).
    pub body_lr: Option<f64>,
}

/// Learning-rate schedules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScheduleKind {
    /// Constant rate.
    Constant,
    /// One-cycle (warm up, then anneal).
    OneCycle,
    /// Cosine annealing.
    Cosine,
    /// Step decay: the rate times `factor` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// The factor applied at each decay.
        factor: f64,
    },
}

/// What `plot` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotKind {
    /// Accuracy and loss curves per epoch.
    History,
    /// The confusion matrix of the last evaluation.
    Confusion,
}

/// Compute devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU through CUDA.
    Cuda,
}
