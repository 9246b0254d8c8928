//! The syntax tree: one [`Statement`] per source line, each with its [`Span`].

use std::fmt;
use std::path::PathBuf;

use crate::data::augment::{Interpolation, Op};
use crate::data::fetch::Named;
use crate::data::saved::SaveFormat;
use crate::data::{PixelScaling, SplitKind};
use crate::model::{DeviceKind, ModelSpec, Optimizer, Schedule};

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

/// Where `load` reads from.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadSource {
    /// A named dataset, from the cache or fetched; `from` points at a folder holding its files.
    Named {
        /// Which dataset.
        name: Named,
        /// A folder holding its files, instead of the cache.
        from: Option<PathBuf>,
    },
    /// A pair of IDX files (optionally gzip-compressed).
    Idx {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
    },
    /// A Keras `mnist.npz`.
    Npz(PathBuf),
    /// A deeplearning.net `mnist.pkl.gz`.
    Pkl(PathBuf),
    /// A Kaggle digit-recognizer CSV.
    Csv(PathBuf),
    /// A folder written by `save`, or (without a manifest, with subfolders) a folder of class
    /// subfolders.
    Dir(PathBuf),
    /// `load folder DIR`: one subfolder of PNG/JPEG pictures per class.
    Folder(PathBuf),
}

/// How `split` divides the data.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitSpec {
    /// Pool every loaded image and divide it by these percentages (train/val/test).
    Percent {
        /// Percent of the images for training.
        train: u32,
        /// Percent for validation.
        val: u32,
        /// Percent for testing.
        test: u32,
        /// The shuffle's seed; the session's seed when `None`.
        seed: Option<u64>,
    },
    /// Keep the test split; carve `percent` of train into a validation split.
    Validation {
        /// Percent of the train split that becomes the validation split.
        percent: u32,
        /// The shuffle's seed; the session's seed when `None`.
        seed: Option<u64>,
    },
}

/// What a statement asks the session to do.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    /// `load ...`
    Load(LoadSource),
    /// `info`
    Info,
    /// `show samples N [SPLIT] [class K]`
    ShowSamples {
        /// How many images.
        count: usize,
        /// From which split; train when `None`.
        split: Option<SplitKind>,
        /// Only images of this class.
        class: Option<u32>,
    },
    /// `normalize [-1..1]`: [`PixelScaling::Unit`] or [`PixelScaling::Symmetric`].
    Normalize(PixelScaling),
    /// `standardize`
    Standardize,
    /// `onehot`
    OneHot,
    /// `split ...`
    Split(SplitSpec),
    /// `filter classes A-B` or `filter classes 1,3,5`
    FilterClasses(Vec<u32>),
    /// `subset N per class [seed S]`
    Subset {
        /// Images kept per class.
        per_class: usize,
        /// The draw's seed; the session's seed when `None`.
        seed: Option<u64>,
    },
    /// `save DIR [as FORMAT]`
    Save {
        /// The folder written.
        dir: PathBuf,
        /// The file format.
        format: SaveFormat,
    },
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
    /// `schedule constant|onecycle|cosine|step [every N] [factor F]`
    Schedule(Schedule),
    /// `batch N`
    Batch(usize),
    /// `memory [SIZE]`: show or set the memory budget (bytes).
    Memory(Option<u64>),
    /// `loss crossentropy [smoothing S]`
    Loss {
        /// Label smoothing ε; none when `None`.
        smoothing: Option<f64>,
    },
    /// `tta on|off`: test-time augmentation for `evaluate`, `predict` and `predictions`.
    Tta(bool),
    /// `ensemble ...`: collect models and classify with the mean of their probabilities.
    Ensemble(EnsembleAction),
    /// `ema D|off`: keep a moving average of the weights with decay D, or none.
    Ema(Option<f64>),
    /// `fit N [patience P] [checkpoint DIR]`
    Fit {
        /// Passes over the train split.
        epochs: usize,
        /// Stop after this many epochs without improvement.
        patience: Option<usize>,
        /// Write `last.safetensors` and `best.safetensors` here after every epoch.
        checkpoint: Option<PathBuf>,
    },
    /// `resume DIR`: continue the run checkpointed in DIR.
    Resume(PathBuf),
    /// `log tensorboard DIR` (`Some`) or `log off` (`None`).
    Log(Option<PathBuf>),
    /// `find lr [A..B] [steps N]`: the learning-rate range test from rate `start` to `end`.
    FindLr {
        /// The first rate.
        start: f64,
        /// The last rate.
        end: f64,
        /// Batches the rate grows over.
        steps: usize,
    },
    /// `evaluate [test|val|train] [N]`
    Evaluate {
        /// Which split; test when `None`.
        split: Option<SplitKind>,
        /// Only its first N images; all when `None`.
        first: Option<usize>,
    },
    /// `predictions [test|val|train] [N]`: the split's N images of highest loss, worst first.
    Predictions {
        /// Which split; test when `None`.
        split: Option<SplitKind>,
        /// How many rows.
        count: usize,
    },
    /// `plot history|confusion`
    Plot(PlotKind),
    /// `show mistakes N`
    ShowMistakes(usize),
    /// `save model PATH`
    SaveModel(PathBuf),
    /// `save history PATH.csv|json`
    SaveHistory(PathBuf),
    /// `load model PATH`
    LoadModel(PathBuf),
    /// `predict PATH`
    Predict(PathBuf),
    /// `device cpu|cuda`
    Device(DeviceKind),
    /// `threads N`
    Threads(usize),
    /// `precision [fp32|bf16]`: `None` shows the precision and the CPU's bf16 units.
    Precision(Option<crate::kernels::Precision>),
    /// `freeze conv|N..M|all but head`
    Freeze(LayerSelection),
    /// `unfreeze [all|conv|N..M|all but head]`
    Unfreeze(LayerSelection),
    /// `head N`: a fresh output layer for N classes.
    Head(usize),
    /// `adapt lora rank R [alpha A]`
    AdaptLora {
        /// The adapters' rank R.
        rank: usize,
        /// The scale numerator α (the update is α/R·B·A); R when `None`.
        alpha: Option<f64>,
    },
    /// `merge`: fold LoRA adapters into the weights.
    Merge,
    /// `compare`: the table of this session's training runs.
    Compare,
    /// `export onnx PATH`: the model as an ONNX file.
    ExportOnnx(PathBuf),
    /// `tune ...`: a seeded random search over training settings and architectures.
    Tune(crate::model::training::tune::Search),
    /// `tune apply`: the best settings of the last `tune`, applied as statements.
    TuneApply,
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

/// What an `augment` statement asks.
#[derive(Debug, Clone, PartialEq)]
pub enum AugmentSpec {
    /// Set the pipeline to these operations; `force` allows flips of digits; `nearest` sampling.
    Ops {
        /// The operations, in order.
        ops: Vec<Op>,
        /// Allow flips of digits.
        force: bool,
        /// How pixels are sampled.
        interpolation: Interpolation,
    },
    /// `augment off`
    Off,
    /// `augment` alone: show the pipeline.
    Show,
    /// `augment preview N`
    Preview(usize),
}

/// What an `ensemble` statement does.
#[derive(Debug, Clone, PartialEq)]
pub enum EnsembleAction {
    /// `ensemble`: list the members and score the ensemble on the validation split.
    Show,
    /// `ensemble add`: the current model joins.
    Add,
    /// `ensemble fit K N [patience P]`: train K fresh models of the current model's layers, seeds
    /// S, S+1, ..., for N epochs each, and add them.
    Fit {
        /// How many models.
        members: usize,
        /// Epochs of each.
        epochs: usize,
        /// Early-stopping patience of each.
        patience: Option<usize>,
    },
    /// `ensemble on|off`: whether evaluation, prediction and export use the ensemble.
    Use(bool),
    /// `ensemble clear`: no members.
    Clear,
    /// `ensemble save DIR`.
    Save(PathBuf),
    /// `ensemble load DIR`.
    Load(PathBuf),
}

/// The network a `model` statement asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChoice {
    /// A named recipe (`seed-small`, `seed-cnn`, `lenet5`, `strong`, `an-m5`, `deotte`).
    Preset(String),
    /// A sequence of layers, and how the output layer is built.
    Layers(ModelSpec),
}

/// An `optimizer` statement: the optimizer with its settings (the unset ones at their
/// defaults) and the learning rate of the body, if it has its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerSpec {
    /// The optimizer and its settings.
    pub optimizer: Optimizer,
    /// Learning rate of the non-head layers (fine-tuning).
    pub body_lr: Option<f64>,
}

/// What `plot` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotKind {
    /// Accuracy and loss curves per epoch.
    History,
    /// The confusion matrix of the last evaluation.
    Confusion,
}
