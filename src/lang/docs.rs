//! The one table of statement documentation. It feeds `help`, the REPL's completion and
//! hints, the kernel's inspect, and the README's statement reference.

use super::ranges::{self, NumRange};

/// Documentation of one statement.
#[derive(Debug, Clone, Copy)]
pub struct StatementDoc {
    /// The leading keyword.
    pub keyword: &'static str,
    /// The full form, e.g. `split 70/15/15 [seed S]`; one line per form.
    pub synopsis: &'static [&'static str],
    /// One sentence on what it does.
    pub summary: &'static str,
    /// Words that may follow the keyword (for completion).
    pub words: &'static [&'static str],
    /// The range of each number the statement takes (the parser enforces them).
    pub numbers: &'static [&'static NumRange],
    /// One example line.
    pub example: &'static str,
}

/// Every statement of the language, in the order `help` lists them.
pub const STATEMENTS: &[StatementDoc] = &[
    StatementDoc {
        keyword: "load",
        synopsis: &[
            "load mnist|fashion-mnist [from PATH]",
            "load idx IMAGES LABELS",
            "load npz PATH",
            "load pkl PATH",
            "load csv PATH",
            "load DIR",
            "load model PATH",
        ],
        summary: "Load a dataset: a named one (from the cache, fetched if missing), IDX files, a Keras mnist.npz, a deeplearning.net mnist.pkl.gz, a Kaggle CSV, or a folder written by `save`; or a model written by `save model`.",
        words: &["mnist", "fashion-mnist", "idx", "npz", "pkl", "csv", "from", "model"],
        numbers: &[],
        example: "load mnist",
    },
    StatementDoc {
        keyword: "info",
        synopsis: &["info"],
        summary: "Per split: count, shape, dtype, class histogram and pixel min/max/mean/std (after normalization).",
        words: &[],
        numbers: &[],
        example: "info",
    },
    StatementDoc {
        keyword: "show",
        synopsis: &["show samples N [SPLIT] [class K]", "show mistakes N"],
        summary: "Draw a grid of N images with their labels, from a split (default train) and optionally one class; or the N test images the model gets most wrong, with true and predicted labels.",
        words: &["samples", "mistakes", "train", "val", "test", "class"],
        numbers: &[&ranges::GRID_COUNT, &ranges::CLASS],
        example: "show samples 16 test class 7",
    },
    StatementDoc {
        keyword: "normalize",
        synopsis: &["normalize", "normalize -1..1"],
        summary: "Scale pixels to [0, 1] (or [-1, 1]); images stay bytes in memory and are scaled when a batch is made.",
        words: &["-1..1"],
        numbers: &[],
        example: "normalize",
    },
    StatementDoc {
        keyword: "standardize",
        synopsis: &["standardize"],
        summary: "Scale pixels to zero mean and unit variance, with mean and std computed on the train split only (and printed).",
        words: &[],
        numbers: &[],
        example: "standardize",
    },
    StatementDoc {
        keyword: "onehot",
        synopsis: &["onehot"],
        summary: "Mark labels one-hot for saving: `save ... as npz` then writes each split's labels as an N×classes 0/1 array (which `load` reads back), and the manifest records it; IDX, CSV and PNG keep one class number per image, as their formats do. Training is the same either way: cross-entropy on class numbers equals cross-entropy on one-hot targets.",
        words: &[],
        numbers: &[],
        example: "onehot",
    },
    StatementDoc {
        keyword: "split",
        synopsis: &["split TRAIN/VAL/TEST [seed S]", "split val PERCENT [seed S]"],
        summary: "Stratified split: pool every loaded image and divide it by percentages (the article's 70/15/15), or keep the official test set and carve a validation share from train. Prints each split's class balance and the images that fall in two splits.",
        words: &["val", "seed", "70/15/15", "80/10/10"],
        numbers: &[&ranges::SHARE, &ranges::VAL_PERCENT, &ranges::SEED],
        example: "split 70/15/15 seed 42",
    },
    StatementDoc {
        keyword: "filter",
        synopsis: &["filter classes A-B", "filter classes A,B,C"],
        summary: "Keep only the images of these classes, in every split; classes keep their names.",
        words: &["classes"],
        numbers: &[&ranges::CLASS],
        example: "filter classes 0-4",
    },
    StatementDoc {
        keyword: "subset",
        synopsis: &["subset N per class [seed S]"],
        summary: "Keep N random images of each class in the train split (few-shot and fine-tuning lessons).",
        words: &["per", "class", "seed"],
        numbers: &[&ranges::PER_CLASS, &ranges::SEED],
        example: "subset 60 per class seed 1",
    },
    StatementDoc {
        keyword: "save",
        synopsis: &["save DIR [as idx|npz|csv|png]", "save model PATH"],
        summary: "Write every split and a manifest.json (source and checksums, the statements that produced it, seed, class counts, normalization, SHA-256 of every file) atomically into DIR; or save the model (safetensors with its spec, classes and normalization).",
        words: &["as", "idx", "npz", "csv", "png", "model"],
        numbers: &[],
        example: "save prepared/mnist-70-15-15",
    },
    StatementDoc {
        keyword: "seed",
        synopsis: &["seed S"],
        summary: "Set the session's random seed, used by every later statement that takes no seed of its own.",
        words: &[],
        numbers: &[&ranges::SEED],
        example: "seed 42",
    },
    StatementDoc {
        keyword: "help",
        synopsis: &["help [STATEMENT]"],
        summary: "List the statements, or show one statement's forms and an example.",
        words: &[],
        numbers: &[],
        example: "help split",
    },
    StatementDoc {
        keyword: "run",
        synopsis: &["run FILE"],
        summary: "Run the statements of a .lab script in this session; stops at the first error.",
        words: &[],
        numbers: &[],
        example: "run examples/prepare.lab",
    },
    StatementDoc {
        keyword: "print",
        synopsis: &["print \"TEXT\""],
        summary: "Write the text to the output.",
        words: &[],
        numbers: &[],
        example: "print \"hello, mnist\"",
    },
    StatementDoc {
        keyword: "augment",
        synopsis: &[
            "augment rotate DEG | shift FRAC|Npx | scale A..B | shear DEG | crop PAD | flip h|v | elastic ALPHA SIGMA | noise STD | erase P  [force] [nearest]",
            "augment off",
            "augment",
            "augment preview N",
        ],
        summary: "Random augmentation of the train split, drawn afresh for every batch of `fit` (validation and test are never augmented). Geometric operations on one line compose into one affine map and one resample. `augment` alone shows the pipeline; `preview` draws originals beside augmented versions.",
        words: &["rotate", "shift", "scale", "shear", "crop", "flip", "elastic", "noise", "erase", "force", "nearest", "off", "preview"],
        numbers: &[&ranges::ROTATE, &ranges::SHIFT_FRACTION, &ranges::SHIFT_PIXELS, &ranges::SCALE, &ranges::SHEAR, &ranges::CROP, &ranges::ELASTIC_ALPHA, &ranges::ELASTIC_SIGMA, &ranges::NOISE, &ranges::ERASE, &ranges::PREVIEW],
        example: "augment rotate 10 shift 0.1",
    },
    StatementDoc {
        keyword: "expand",
        synopsis: &["expand Nx"],
        summary: "Make the train split N times its size now: the originals plus N-1 augmented copies (recorded in the manifest).",
        words: &["2x", "3x"],
        numbers: &[&ranges::EXPAND],
        example: "expand 2x",
    },
    StatementDoc {
        keyword: "model",
        synopsis: &["model LAYER...", "model seed-small|seed-cnn|lenet5|strong"],
        summary: "Build a network: convN (3×3, ReLU; convNk5 for 5×5; `same` after it pads), pool, avgpool, bn, dropout P, denseN (ReLU), gap; flatten is implied before the first dense and the output layer follows from the classes. Presets: seed-small (the article's §4.3 net), seed-cnn (its §5.2 net), lenet5, strong.",
        words: &["seed-small", "seed-cnn", "lenet5", "strong", "conv32", "conv64", "pool", "avgpool", "bn", "dropout", "dense128", "gap", "same"],
        numbers: &[&ranges::FILTERS, &ranges::UNITS, &ranges::DROPOUT],
        example: "model conv32 pool conv64 pool dense128",
    },
    StatementDoc {
        keyword: "summary",
        synopsis: &["summary"],
        summary: "Keras-style table of the model: layer number, layer, output shape, parameters, whether they train (frozen layers say no; LoRA adapters are counted on their layer), and the trainable and non-trainable totals.",
        words: &[],
        numbers: &[],
        example: "summary",
    },
    StatementDoc {
        keyword: "optimizer",
        synopsis: &["optimizer adam|adamw|sgd [lr X] [momentum M] [decay W] [body X]"],
        summary: "Choose the optimizer (default adam lr 0.001); `body` sets a separate learning rate for every layer before the output layer (two parameter groups, each with its own optimizer state, both following the schedule).",
        words: &["adam", "adamw", "sgd", "lr", "momentum", "decay", "body"],
        numbers: &[&ranges::LR, &ranges::MOMENTUM, &ranges::DECAY, &ranges::BODY_LR],
        example: "optimizer adam lr 0.001",
    },
    StatementDoc {
        keyword: "schedule",
        synopsis: &["schedule constant|onecycle|cosine", "schedule step [every N] [factor F]"],
        summary: "Learning-rate schedule over the epochs of `fit` (default constant); `step` multiplies the rate by F every N epochs (default every 3 by 0.5).",
        words: &["constant", "onecycle", "cosine", "step", "every", "factor"],
        numbers: &[&ranges::STEP_EVERY, &ranges::STEP_FACTOR],
        example: "schedule onecycle",
    },
    StatementDoc {
        keyword: "batch",
        synopsis: &["batch N"],
        summary: "Batch size of `fit` and `evaluate` (default 32, like Keras).",
        words: &[],
        numbers: &[&ranges::BATCH],
        example: "batch 128",
    },
    StatementDoc {
        keyword: "memory",
        synopsis: &["memory", "memory SIZE"],
        summary: "Show or set the memory budget (`4G`, `512M`): statements whose memory grows with a number you typed (model sizes, `batch`, `expand`, image grids, files read) check it first and refuse what would not fit. It starts as MNISTLAB_MEMORY, else three quarters of the memory available, and is never more than the machine's memory.",
        words: &[],
        numbers: &[&ranges::MEMORY],
        example: "memory 8G",
    },
    StatementDoc {
        keyword: "loss",
        synopsis: &["loss crossentropy [smoothing S]"],
        summary: "Cross-entropy loss, optionally with label smoothing.",
        words: &["crossentropy", "smoothing"],
        numbers: &[&ranges::SMOOTHING],
        example: "loss crossentropy smoothing 0.1",
    },
    StatementDoc {
        keyword: "fit",
        synopsis: &["fit N [patience P]"],
        summary: "Train for N epochs: shuffled batches, online augmentation of train only, a Keras-style line per epoch, the best validation epoch's weights kept and restored, early stopping after P epochs without improvement. Ctrl-C stops after the current batch.",
        words: &["patience"],
        numbers: &[&ranges::EPOCHS, &ranges::PATIENCE],
        example: "fit 10",
    },
    StatementDoc {
        keyword: "evaluate",
        synopsis: &["evaluate [test|val|train]"],
        summary: "Loss, accuracy and per-class accuracy of the model on a split (default test).",
        words: &["test", "val", "train"],
        numbers: &[],
        example: "evaluate test",
    },
    StatementDoc {
        keyword: "plot",
        synopsis: &["plot history|confusion"],
        summary: "Plot accuracy/val_accuracy and loss/val_loss per epoch (the article's figure), or the confusion matrix of the last evaluation.",
        words: &["history", "confusion"],
        numbers: &[],
        example: "plot history",
    },
    StatementDoc {
        keyword: "predict",
        synopsis: &["predict PATH"],
        summary: "Classify a picture of a digit (PNG/JPEG) or a folder of them, after MNIST-style preprocessing; prints the top 3 classes with probabilities.",
        words: &[],
        numbers: &[],
        example: "predict digits/seven.png",
    },
    StatementDoc {
        keyword: "freeze",
        synopsis: &["freeze conv", "freeze N[..M]", "freeze all but head"],
        summary: "Stop training some layers: every convolution and its batch norms, layers N..M as `summary` numbers them, or all but the output layer. Frozen parameters get no gradient and no optimizer state; frozen batch norms run in inference mode. `save model` records them.",
        words: &["conv", "all", "but", "head"],
        numbers: &[&ranges::LAYER],
        example: "freeze all but head",
    },
    StatementDoc {
        keyword: "unfreeze",
        synopsis: &["unfreeze [all]", "unfreeze conv|N[..M]|all but head"],
        summary: "Train frozen layers again: all of them, or those named as in `freeze`.",
        words: &["all", "conv", "but", "head"],
        numbers: &[&ranges::LAYER],
        example: "unfreeze",
    },
    StatementDoc {
        keyword: "head",
        synopsis: &["head N"],
        summary: "Replace the output layer with a fresh one (Glorot, from the seed) for N classes, keeping every other layer: output k stands for the k-th class present in the data (after `filter classes 5-9`, outputs 0..4 are the classes 5..9, and predictions say 7, not 2).",
        words: &[],
        numbers: &[&ranges::HEAD],
        example: "head 5",
    },
    StatementDoc {
        keyword: "adapt",
        synopsis: &["adapt lora rank R [alpha A]"],
        summary: "Add LoRA adapters (Hu et al. 2021) to the hidden dense layers: W·x + (alpha/R)·B·A·x with A Kaiming-uniform and B zero (alpha defaults to R). The body's own weights are frozen while adapters exist; the adapters and the output layer train. `save model` keeps them.",
        words: &["lora", "rank", "alpha"],
        numbers: &[&ranges::RANK, &ranges::ALPHA],
        example: "adapt lora rank 4 alpha 8",
    },
    StatementDoc {
        keyword: "merge",
        synopsis: &["merge"],
        summary: "Fold the LoRA adapters into their layers' weights (W + (alpha/R)·B·A) and remove them.",
        words: &[],
        numbers: &[],
        example: "merge",
    },
    StatementDoc {
        keyword: "compare",
        synopsis: &["compare"],
        summary: "Table of this session's training runs: model, data, what was frozen or adapted, trainable parameters, epochs, seconds, best validation and test accuracy (the test split is evaluated at the end of each `fit`); runs that differ only by seed are also summarized as mean (min–max).",
        words: &[],
        numbers: &[],
        example: "compare",
    },
    StatementDoc {
        keyword: "device",
        synopsis: &["device cpu|cuda"],
        summary: "Where the model computes (cuda needs a build with `--features cuda`).",
        words: &["cpu", "cuda"],
        numbers: &[],
        example: "device cpu",
    },
    StatementDoc {
        keyword: "threads",
        synopsis: &["threads N"],
        summary: "Worker threads for training and augmentation.",
        words: &[],
        numbers: &[&ranges::THREADS],
        example: "threads 2",
    },
];

/// The documentation of `keyword`, if it is a statement.
pub fn lookup(keyword: &str) -> Option<&'static StatementDoc> {
    STATEMENTS.iter().find(|doc| doc.keyword == keyword)
}

/// Every statement keyword.
pub fn keywords() -> impl Iterator<Item = &'static str> {
    STATEMENTS.iter().map(|doc| doc.keyword)
}

/// The statement reference as Markdown, as it stands in the README.
pub fn markdown_reference() -> String {
    let mut out = String::from("| statement | what it does |\n|---|---|\n");
    for doc in STATEMENTS {
        let forms: Vec<String> = doc.synopsis.iter().map(|s| format!("`{}`", s.replace('|', "\\|"))).collect();
        out.push_str(&format!("| {} | {}{} |\n", forms.join("<br>"), doc.summary, numbers_sentence(doc)));
    }
    out
}

/// The long help text of one statement.
pub fn help_text(doc: &StatementDoc) -> String {
    let mut out = String::new();
    for form in doc.synopsis {
        out.push_str(form);
        out.push('\n');
    }
    out.push_str(&format!("  {}{}\n  example: {}", doc.summary, numbers_sentence(doc), doc.example));
    out
}

/// ` Ranges: N 1 to 65536 (a batch size); …` for a statement's numbers, or nothing.
pub fn numbers_sentence(doc: &StatementDoc) -> String {
    if doc.numbers.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = doc.numbers.iter().map(|r| format!("{} {} ({})", r.name, r.bounds(), r.what)).collect();
    format!(" Ranges: {}.", parts.join("; "))
}
