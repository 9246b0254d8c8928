//! The training statements: model, summary, optimizer, schedule, batch, memory, loss, fit,
//! evaluate, plot, predict, device, threads, export. Each one's definition stands above its parser.

use nom::bytes::complete::tag;
use nom::character::complete::space1;
use nom::combinator::{map, opt};
use nom::sequence::{preceded, tuple};

use crate::data::SplitKind;
use crate::kernels::Precision;
use crate::lang::ast::*;
use crate::lang::combinators::*;
use crate::lang::definition::StatementDoc;
use crate::lang::ranges::{self, NumRange};
use crate::model::architecture::layers::{Activation, Conv, Dense, Kind, Output, OutputStyle};
use crate::model::architecture::spec::PRESETS;
use crate::model::{DeviceKind, Layer, ModelSpec, Optimizer, Schedule};

/// The statements of this group, in the order `help` lists them.
pub(crate) const STATEMENTS: &[StatementDoc] = &[
    MODEL,
    SUMMARY,
    OPTIMIZER,
    SCHEDULE,
    BATCH,
    MEMORY,
    LOSS,
    EMA,
    FIND_LR,
    TTA,
    ENSEMBLE,
    FIT,
    RESUME,
    LOG,
    EVALUATE,
    PREDICTIONS,
    PLOT,
    PREDICT,
    DEVICE,
    PRECISION,
    THREADS,
    EXPORT,
];

/// The `model` statement.
const MODEL: StatementDoc = StatementDoc {
    keyword: "model",
    synopsis: &["model LAYER... [output [nobias] [bn]]", "model seed-small|seed-cnn|lenet5|strong|an-m5|deotte"],
    summary: "Build a network: convN (3×3 with bias and ReLU; convNkK for K×K, K 1 to 7; after it `same` pads, `stride S` steps S pixels, `nobias` and `norelu` leave those out), pool, avgpool, bn, dropout P, denseN (bias and ReLU; `nobias`, `norelu` after it), gap, and relu, tanh, silu as layers of their own; flatten is implied before the first dense and the output layer follows from the classes (`output nobias bn` at the end builds it without bias and with a batch norm on the logits). Presets: seed-small (the article's §4.3 net), seed-cnn (its §5.2 net), lenet5, strong, an-m5 (An et al. 2020's M5), deotte (Deotte's Kaggle CNN).",
    words: &[
        "seed-small", "seed-cnn", "lenet5", "strong", "an-m5", "deotte", "conv32", "conv64", "pool", "avgpool", "bn", "dropout", "dense128",
        "gap", "same", "stride", "nobias", "norelu", "relu", "tanh", "silu", "output",
    ],
    numbers: &[&ranges::FILTERS, &ranges::STRIDE, &ranges::UNITS, &ranges::DROPOUT],
    example: "model conv32 pool conv64 pool dense128",
    parse: model,
};

fn model(input: &str) -> Res<'_, StatementKind> {
    let (first, _) = expect(
        "a preset (seed-small, seed-cnn, lenet5, strong, an-m5, deotte) or layers like `conv32 pool dense128`",
        space1,
    )(input)?;
    map(model_words, StatementKind::Model)(first)
}

/// The words of `model` after its keyword: a preset, or layers (also read inside `tune`'s
/// quoted model choices).
pub(super) fn model_words(first: &str) -> Res<'_, ModelChoice> {
    if let Ok((rest, word)) = token(first) {
        if PRESETS.contains(&word) {
            return Ok((rest, ModelChoice::Preset(word.to_string())));
        }
    }
    let (mut rest, first_layer) = layer(first)?;
    let mut spec = ModelSpec::new(vec![first_layer]);
    while let Ok((r, _)) = space1::<_, PErr>(rest) {
        if r.is_empty() {
            break;
        }
        if let Ok((r, _)) = keyword(&["output"])(r) {
            (rest, spec.output) = output_style(r)?;
            break;
        }
        let (r, l) = layer(r)?;
        spec.layers.push(l);
        rest = r;
    }
    Ok((rest, ModelChoice::Layers(spec)))
}

/// The options after `output`, the last words of a `model` line: ` nobias`, ` bn`, in any order.
fn output_style(mut rest: &str) -> Res<'_, OutputStyle> {
    let mut style = OutputStyle::default();
    while let Ok((r, word)) = preceded(space1::<_, PErr>, keyword(&["nobias", "bn"]))(rest) {
        match word {
            "nobias" => style.bias = false,
            _ => style.batch_norm = true,
        }
        rest = r;
    }
    Ok((rest, style))
}

/// The `model` statement that builds `spec` (the inverse of its parser): `model conv32 pool dense128`.
pub(crate) fn model_statement(spec: &crate::model::ModelSpec) -> String {
    let mut words: Vec<String> = spec.layers.iter().map(|l| l.kind().words()).collect();
    if !spec.output.is_default() {
        words.push(Output { classes: 0, style: spec.output }.words());
    }
    format!("model {}", words.join(" "))
}

const LAYER_WORDS: &[&str] = &[
    "conv32", "conv64k5", "same", "stride", "nobias", "norelu", "pool", "avgpool", "bn", "dropout", "dense128", "gap",
    "relu", "tanh", "silu", "output",
];

/// What a layer word may be followed by: ` nobias`, ` norelu` (both for a convolution or a
/// dense layer), in any order; returns (bias, relu).
fn bias_and_relu(mut rest: &str) -> Res<'_, (bool, bool)> {
    let (mut bias, mut relu) = (true, true);
    while let Ok((r, word)) = preceded(space1::<_, PErr>, keyword(&["nobias", "norelu"]))(rest) {
        match word {
            "nobias" => bias = false,
            _ => relu = false,
        }
        rest = r;
    }
    Ok((rest, (bias, relu)))
}

/// `convN[kK]` and its options `same`, `stride S`, `nobias`, `norelu` (in any order) after its
/// `conv` prefix `spec` (`N[kK]`); `None` when `spec` is not one.
fn conv_layer<'a>(input: &'a str, spec: &str, rest: &'a str) -> Option<Res<'a, Layer>> {
    let digits = |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s.to_string());
    let (filters, kernel) = match spec.split_once('k') {
        Some((f, k)) => (digits(f)?, digits(k)?),
        None => (digits(spec)?, "3".to_string()),
    };
    let parsed = (|| {
        let filters = width(input, &filters, &ranges::FILTERS)?;
        let kernel = match kernel.parse::<usize>() {
            Ok(k @ 1..=7) => k,
            _ => return fail(input, "a kernel size from 1 to 7 (`conv32` is 3×3, `conv32k5` 5×5)"),
        };
        // Its options, in any order.
        let (mut rest, mut same_padding, mut stride, mut bias, mut relu) = (rest, false, 1, true, true);
        while let Ok((r, word)) = preceded(space1::<_, PErr>, keyword(&["same", "stride", "nobias", "norelu"]))(rest) {
            rest = r;
            match word {
                "same" => same_padding = true,
                "stride" => (rest, stride) = count_arg(&ranges::STRIDE)(rest)?,
                "nobias" => bias = false,
                _ => relu = false,
            }
        }
        Ok((rest, Layer::Conv(Conv { filters, kernel, same_padding, stride, bias, relu })))
    })();
    Some(parsed)
}

/// A width in `range`, or a failure with the caret under the word at `input`.
fn width<'a>(input: &'a str, text: &str, range: &'static NumRange) -> Result<usize, nom::Err<PErr<'a>>> {
    match text.parse::<u64>() {
        Ok(n) if range.contains(n as f64) => Ok(n as usize),
        _ => Err(nom::Err::Failure(PErr { at: input, expected: range.to_string().into(), suggestion: None })),
    }
}

/// One layer word of `model`, as the model layer's [`Layer`].
fn layer(input: &str) -> Res<'_, Layer> {
    let (rest, word) = token(input)?;
    if let Some(parsed) = word.strip_prefix("conv").and_then(|spec| conv_layer(input, spec, rest)) {
        return parsed;
    }
    if let Some(n) = word.strip_prefix("dense").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        let units = width(input, n, &ranges::UNITS)?;
        let (rest, (bias, relu)) = bias_and_relu(rest)?;
        return Ok((rest, Layer::Dense(Dense { units, bias, relu })));
    }
    let layer = match word {
        "pool" | "maxpool" => Layer::MaxPool,
        "avgpool" => Layer::AvgPool,
        "bn" => Layer::BatchNorm,
        "gap" => Layer::GlobalAvgPool,
        "relu" => Layer::Activation(Activation::Relu),
        "tanh" => Layer::Activation(Activation::Tanh),
        "silu" | "swish" => Layer::Activation(Activation::Silu),
        "dropout" => {
            let (rest, p) = real_arg(&ranges::DROPOUT)(rest)?;
            return Ok((rest, Layer::dropout(p as f32)));
        }
        _ => {
            return Err(nom::Err::Failure(PErr {
                at: input,
                expected: "a layer: convN, convNkK, pool, avgpool, bn, dropout P, denseN, gap, relu, tanh or silu"
                    .into(),
                suggestion: closest(word, LAYER_WORDS.iter().chain(&PRESETS).copied()).map(str::to_string),
            }))
        }
    };
    Ok((rest, layer))
}

/// The `summary` statement.
const SUMMARY: StatementDoc = StatementDoc {
    keyword: "summary",
    synopsis: &["summary"],
    summary: "Keras-style table of the model: layer number, layer, output shape, parameters, whether they train (frozen layers say no; LoRA adapters are counted on their layer), and the trainable and non-trainable totals.",
    words: &[],
    numbers: &[],
    example: "summary",
    parse: summary,
};

fn summary(input: &str) -> Res<'_, StatementKind> {
    Ok((input, StatementKind::Summary))
}

/// The `optimizer` statement.
const OPTIMIZER: StatementDoc = StatementDoc {
    keyword: "optimizer",
    synopsis: &["optimizer adam|adamw|sgd [lr X] [momentum M] [decay W] [body X]"],
    summary: "Choose the optimizer (default adam lr 0.001); `body` sets a separate learning rate for every layer before the output layer (two parameter groups, each with its own optimizer state, both following the schedule).",
    words: &["adam", "adamw", "sgd", "lr", "momentum", "decay", "body"],
    numbers: &[&ranges::LR, &ranges::MOMENTUM, &ranges::DECAY, &ranges::BODY_LR],
    example: "optimizer adam lr 0.001",
    parse: optimizer,
};

fn optimizer(input: &str) -> Res<'_, StatementKind> {
    let (mut rest, name) = arg("`adam`, `adamw` or `sgd`", keyword(&["adam", "adamw", "sgd"]))(input)?;
    // Keras' defaults: Adam and AdamW at 0.001 (AdamW decaying by 0.01), SGD at 0.01.
    let mut optimizer = match name {
        "adam" => Optimizer::Adam { lr: 1e-3 },
        "adamw" => Optimizer::AdamW { lr: 1e-3, weight_decay: 0.01 },
        _ => Optimizer::Sgd { lr: 0.01, momentum: 0.0 },
    };
    let mut body_lr = None;
    while let Ok((r, _)) = space1::<_, PErr>(rest) {
        if r.is_empty() {
            break;
        }
        let (after, option) = keyword(&["lr", "momentum", "decay", "body"])(r)?;
        let bounds = match option {
            "lr" => &ranges::LR,
            "momentum" => &ranges::MOMENTUM,
            "decay" => &ranges::DECAY,
            _ => &ranges::BODY_LR,
        };
        let (after, value) = real_arg(bounds)(after)?;
        match (option, &mut optimizer) {
            ("lr", Optimizer::Adam { lr } | Optimizer::AdamW { lr, .. } | Optimizer::Sgd { lr, .. }) => *lr = value,
            ("momentum", Optimizer::Sgd { momentum, .. }) => *momentum = value,
            ("momentum", _) => {
                let why = "Adam's moments are built in";
                return fail(r, format!("an option of {name} (`momentum` applies to sgd only, not {name}: {why})"));
            }
            ("decay", Optimizer::AdamW { weight_decay, .. }) => *weight_decay = value,
            ("decay", _) => {
                let how = "use `optimizer adamw ... decay W`";
                return fail(r, format!("an option of {name} (`decay` applies to adamw only, not {name}: {how})"));
            }
            _ => body_lr = Some(value),
        }
        rest = after;
    }
    Ok((rest, StatementKind::Optimizer(OptimizerSpec { optimizer, body_lr })))
}

/// The `schedule` statement.
const SCHEDULE: StatementDoc = StatementDoc {
    keyword: "schedule",
    synopsis: &["schedule constant|onecycle|cosine", "schedule step [every N] [factor F]"],
    summary: "Learning-rate schedule over the epochs of `fit` (default constant); `step` multiplies the rate by F every N epochs (default every 3 by 0.5).",
    words: &["constant", "onecycle", "cosine", "step", "every", "factor"],
    numbers: &[&ranges::STEP_EVERY, &ranges::STEP_FACTOR],
    example: "schedule onecycle",
    parse: schedule,
};

fn schedule(input: &str) -> Res<'_, StatementKind> {
    let (rest, word) = arg("a schedule", keyword(&["constant", "onecycle", "cosine", "step"]))(input)?;
    let schedule = match word {
        "constant" => Schedule::Constant,
        "onecycle" => Schedule::OneCycle,
        "cosine" => Schedule::Cosine,
        _ => {
            let (rest, every) = opt(preceded(tuple((space1, tag("every"))), count_arg(&ranges::STEP_EVERY)))(rest)?;
            let (rest, factor) = opt(preceded(tuple((space1, tag("factor"))), real_arg(&ranges::STEP_FACTOR)))(rest)?;
            let schedule = Schedule::Step { every: every.unwrap_or(3), gamma: factor.unwrap_or(0.5) };
            return Ok((rest, StatementKind::Schedule(schedule)));
        }
    };
    Ok((rest, StatementKind::Schedule(schedule)))
}

/// The `batch` statement.
const BATCH: StatementDoc = StatementDoc {
    keyword: "batch",
    synopsis: &["batch N"],
    summary: "Batch size of `fit` and `evaluate` (default 32, like Keras).",
    words: &[],
    numbers: &[&ranges::BATCH],
    example: "batch 128",
    parse: batch,
};

fn batch(input: &str) -> Res<'_, StatementKind> {
    map(count_arg(&ranges::BATCH), StatementKind::Batch)(input)
}

/// The `memory` statement.
const MEMORY: StatementDoc = StatementDoc {
    keyword: "memory",
    synopsis: &["memory", "memory SIZE"],
    summary: "Show or set the memory budget (`4G`, `512M`): statements whose memory grows with a number you typed (model sizes, `batch`, `expand`, image grids, files read) check it first and refuse what would not fit. It starts as MNISTLAB_MEMORY, else three quarters of the memory available, and is never more than the machine's memory.",
    words: &[],
    numbers: &[&ranges::MEMORY],
    example: "memory 8G",
    parse: memory,
};

/// `memory` alone (show the budget) or `memory SIZE` (`4G`, `512M`, bytes).
fn memory(input: &str) -> Res<'_, StatementKind> {
    let Ok((rest, word)) = preceded(space1::<_, PErr>, token)(input) else {
        return Ok((input, StatementKind::Memory(None)));
    };
    let at = input.trim_start();
    match crate::budget::parse_size(word) {
        Some(bytes) if ranges::MEMORY.contains(bytes as f64) => Ok((rest, StatementKind::Memory(Some(bytes)))),
        _ => fail(at, format!("{} like `4G` or `512M`", ranges::MEMORY.what)),
    }
}

/// The `loss` statement.
const LOSS: StatementDoc = StatementDoc {
    keyword: "loss",
    synopsis: &["loss crossentropy [smoothing S]"],
    summary: "Cross-entropy loss, optionally with label smoothing.",
    words: &["crossentropy", "smoothing"],
    numbers: &[&ranges::SMOOTHING],
    example: "loss crossentropy smoothing 0.1",
    parse: loss,
};

fn loss(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = arg("`crossentropy`", keyword(&["crossentropy"]))(input)?;
    let (rest, smoothing) = opt(preceded(tuple((space1, tag("smoothing"))), real_arg(&ranges::SMOOTHING)))(rest)?;
    Ok((rest, StatementKind::Loss { smoothing }))
}

/// The `ema` statement.
const EMA: StatementDoc = StatementDoc {
    keyword: "ema",
    synopsis: &["ema D|off"],
    summary: "Keep an exponential moving average of the trainable weights during `fit` (Keras' `use_ema`, as An et al. keep it for their MNIST records): after every step avg = d·avg + (1−d)·w with d = min(D, (1+n)/(10+n)) at step n. Validation, the kept epoch and the weights `fit` leaves behind (so `evaluate`, `save model`, `export onnx`) use the average; checkpoints hold both. Batch-norm statistics are not averaged. `ema off` stops it.",
    words: &["off"],
    numbers: &[&ranges::EMA],
    example: "ema 0.999",
    parse: ema,
};

fn ema(input: &str) -> Res<'_, StatementKind> {
    let (first, _) = expect("a decay D such as 0.999, or `off`", space1)(input)?;
    if let Ok((rest, _)) = tag::<_, _, PErr>("off")(first) {
        return Ok((rest, StatementKind::Ema(None)));
    }
    let (rest, decay) = expect_owned(&ranges::EMA, real_in(&ranges::EMA))(first)?;
    Ok((rest, StatementKind::Ema(Some(decay))))
}

/// The `tta` statement.
const TTA: StatementDoc = StatementDoc {
    keyword: "tta",
    synopsis: &["tta on|off"],
    summary: "Test-time augmentation for `evaluate`, `predict`, `predictions` and `show mistakes`: each image is classified as itself and shifted by one pixel left, right, up and down, and its probabilities are the mean of the five softmaxes (fixed views, so results repeat exactly). Training and its validation are unchanged. Off by default.",
    words: &["on", "off"],
    numbers: &[],
    example: "tta on",
    parse: tta,
};

fn tta(input: &str) -> Res<'_, StatementKind> {
    let (rest, word) = arg("`on` or `off`", keyword(&["on", "off"]))(input)?;
    Ok((rest, StatementKind::Tta(word == "on")))
}

/// The `ensemble` statement.
const ENSEMBLE: StatementDoc = StatementDoc {
    keyword: "ensemble",
    synopsis: &[
        "ensemble",
        "ensemble add",
        "ensemble fit K N [patience P]",
        "ensemble on|off",
        "ensemble clear",
        "ensemble save DIR",
        "ensemble load DIR",
    ],
    summary: "Several models that classify by the mean of their softmax probabilities (as An et al. and Deotte average their MNIST records). `add` puts a copy of the current model in; `fit K N` trains K fresh models of the current model's layers with seeds S, S+1, … (S the session's seed) for N epochs each under the current settings, adds them (the current model is the last of them afterwards), turns the ensemble on and evaluates it on the test split once; `on` makes `evaluate`, `predict`, `predictions`, `show mistakes` and `export onnx` (one graph averaging the members) use the ensemble, `off` the current model again. `ensemble` alone lists the members and scores the ensemble on the validation split; `save DIR` writes each member as a model file with a list of them, `load DIR` reads them back (and turns the ensemble on). `compare` lists the members and the ensemble.",
    words: &["add", "fit", "on", "off", "clear", "save", "load", "patience"],
    numbers: &[&ranges::MEMBERS, &ranges::EPOCHS, &ranges::PATIENCE],
    example: "ensemble fit 3 10",
    parse: ensemble,
};

fn ensemble(input: &str) -> Res<'_, StatementKind> {
    use EnsembleAction as A;
    let Ok((rest, _)) = space1::<_, PErr>(input) else {
        return Ok((input, StatementKind::Ensemble(A::Show)));
    };
    if rest.is_empty() {
        return Ok((rest, StatementKind::Ensemble(A::Show)));
    }
    let (rest, word) = keyword(&["add", "fit", "on", "off", "clear", "save", "load"])(rest)?;
    let (rest, action) = match word {
        "add" => (rest, A::Add),
        "on" | "off" => (rest, A::Use(word == "on")),
        "clear" => (rest, A::Clear),
        "save" => map(arg("a folder for the ensemble", path), A::Save)(rest)?,
        "load" => map(arg("a folder written by `ensemble save`", path), A::Load)(rest)?,
        _ => {
            let (rest, members) = count_arg(&ranges::MEMBERS)(rest)?;
            let (rest, epochs) = count_arg(&ranges::EPOCHS)(rest)?;
            let (rest, patience) = opt(preceded(tuple((space1, tag("patience"))), count_arg(&ranges::PATIENCE)))(rest)?;
            (rest, A::Fit { members, epochs, patience })
        }
    };
    Ok((rest, StatementKind::Ensemble(action)))
}

/// The `fit` statement.
const FIT: StatementDoc = StatementDoc {
    keyword: "fit",
    synopsis: &["fit N [patience P] [checkpoint DIR]"],
    summary: "Train for N epochs: shuffled batches, online augmentation of train only, a Keras-style line per epoch, the best validation epoch's weights kept and restored, early stopping after P epochs without improvement. Ctrl-C stops after the current batch. With `checkpoint DIR`, after every epoch DIR/last.safetensors (and DIR/best.safetensors for the epoch whose weights fit keeps) is written atomically: the model, optimizer state, schedule position, epoch, generator positions and history, for `resume DIR`; `load model` reads either as a model. With `log tensorboard` on, each fit also writes a TensorBoard run.",
    words: &["patience", "checkpoint"],
    numbers: &[&ranges::EPOCHS, &ranges::PATIENCE],
    example: "fit 10",
    parse: fit,
};

fn fit(input: &str) -> Res<'_, StatementKind> {
    let (rest, epochs) = count_arg(&ranges::EPOCHS)(input)?;
    let (rest, patience) = opt(preceded(tuple((space1, tag("patience"))), count_arg(&ranges::PATIENCE)))(rest)?;
    let (rest, checkpoint) =
        opt(preceded(tuple((space1, tag("checkpoint"))), arg("a folder for the checkpoints", path)))(rest)?;
    Ok((rest, StatementKind::Fit { epochs, patience, checkpoint }))
}

/// The `resume` statement.
const RESUME: StatementDoc = StatementDoc {
    keyword: "resume",
    synopsis: &["resume DIR"],
    summary: "Continue the run that `fit N checkpoint DIR` checkpointed: the model, optimizer state, schedule, generators and history come from DIR/last.safetensors, and training goes on to the N epochs planned, checkpointing into DIR again. The data must be the same as the run's (prepared by the same statements: a fingerprint is checked) and so must the augmentation; on the CPU with the same thread count the result is bit-identical to an uninterrupted run.",
    words: &[],
    numbers: &[],
    example: "resume runs/mnist",
    parse: resume,
};

fn resume(input: &str) -> Res<'_, StatementKind> {
    map(arg("a checkpoint folder", path), StatementKind::Resume)(input)
}

/// The `log` statement.
const LOG: StatementDoc = StatementDoc {
    keyword: "log",
    synopsis: &["log tensorboard DIR", "log off"],
    summary: "From now on each `fit` writes a TensorBoard run DIR/<model>-<time>/ (its name printed): per-epoch scalars (loss, accuracy, val_loss, val_accuracy, learning rate, images/s), the running loss every few batches, per-epoch histograms of each parameter and of its gradient at the epoch's last step, a sample grid at the start, the confusion matrix and worst test mistakes at the end, and the model and statements as text. `log off` stops.",
    words: &["tensorboard", "off"],
    numbers: &[],
    example: "log tensorboard runs/tb",
    parse: log,
};

fn log(input: &str) -> Res<'_, StatementKind> {
    let (rest, word) = arg("`tensorboard DIR` or `off`", keyword(&["tensorboard", "off"]))(input)?;
    if word == "off" {
        return Ok((rest, StatementKind::Log(None)));
    }
    map(arg("a folder for the TensorBoard runs", path), |dir| StatementKind::Log(Some(dir)))(rest)
}

/// The `find lr` statement.
const FIND_LR: StatementDoc = StatementDoc {
    keyword: "find",
    synopsis: &["find lr [A..B] [steps N]"],
    summary: "The learning-rate range test (fastai's lr_find): train N batches (default 100) of the train split, without augmentation, with the optimizer's rate growing exponentially from A to B (default 1e-7..10); stop when the smoothed loss passes 4× its lowest; plot the smoothed loss against the rate and print two suggestions: the steepest descent and the lowest loss ÷ 10. The model's weights are restored afterwards. Ctrl-C stops after the current batch.",
    words: &["lr", "steps"],
    numbers: &[&ranges::LR, &ranges::LR_STEPS],
    example: "find lr 1e-6..1 steps 50",
    parse: find_lr,
};

/// Rates of `find lr` without `A..B`.
const FIND_LR_DEFAULT: (f64, f64) = (1e-7, 10.0);

/// Batches of `find lr` without `steps N`.
const FIND_LR_STEPS: usize = 100;

fn find_lr(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = arg("`lr`", keyword(&["lr"]))(input)?;
    let (rest, rates) = opt(preceded(space1, range(&ranges::LR)))(rest)?;
    let (rest, steps) = opt(preceded(tuple((space1, tag("steps"))), count_arg(&ranges::LR_STEPS)))(rest)?;
    let (start, end) = rates.unwrap_or(FIND_LR_DEFAULT);
    Ok((rest, StatementKind::FindLr { start, end, steps: steps.unwrap_or(FIND_LR_STEPS) }))
}

/// The `evaluate` statement.
const EVALUATE: StatementDoc = StatementDoc {
    keyword: "evaluate",
    synopsis: &["evaluate [test|val|train] [N]"],
    summary: "Loss, accuracy and per-class accuracy of the model on a split (default test), or on its first N images.",
    words: &["test", "val", "train"],
    numbers: &[&ranges::EVAL_FIRST],
    example: "evaluate test 1000",
    parse: evaluate,
};

/// `[SPLIT] [N]` after a keyword: an optional split name, then an optional whole number in `range`.
fn split_and_count<'a>(input: &'a str, range: &'static NumRange) -> Res<'a, (Option<SplitKind>, Option<usize>)> {
    let (rest, split) = opt(preceded(space1, split_name))(input)?;
    let (rest, count) = opt(preceded(space1, count_in(range)))(rest)?;
    Ok((rest, (split, count)))
}

fn evaluate(input: &str) -> Res<'_, StatementKind> {
    let (rest, (split, first)) = split_and_count(input, &ranges::EVAL_FIRST)?;
    if split.is_none() && first.is_none() && !rest.trim().is_empty() {
        return fail(rest.trim_start(), "`test`, `val` or `train`, or a number of images");
    }
    Ok((rest, StatementKind::Evaluate { split, first }))
}

/// The `predictions` statement.
const PREDICTIONS: StatementDoc = StatementDoc {
    keyword: "predictions",
    synopsis: &["predictions [test|val|train] [N]"],
    summary: "A table of the split's N images (default test, 20) the model gets worst, highest loss first, as fastai's top_losses: image index, true class, predicted class, its probability, the probability of the true class and the loss.",
    words: &["test", "val", "train"],
    numbers: &[&ranges::PREDICTION_ROWS],
    example: "predictions test 20",
    parse: predictions,
};

/// Rows of `predictions` without N.
const PREDICTION_ROWS: usize = 20;

fn predictions(input: &str) -> Res<'_, StatementKind> {
    let (rest, (split, count)) = split_and_count(input, &ranges::PREDICTION_ROWS)?;
    if split.is_none() && count.is_none() && !rest.trim().is_empty() {
        return fail(rest.trim_start(), "`test`, `val` or `train`, or a number of rows");
    }
    Ok((rest, StatementKind::Predictions { split, count: count.unwrap_or(PREDICTION_ROWS) }))
}

/// The `plot` statement.
const PLOT: StatementDoc = StatementDoc {
    keyword: "plot",
    synopsis: &["plot history|confusion"],
    summary: "Plot accuracy/val_accuracy and loss/val_loss per epoch (the article's figure), or the confusion matrix of the last evaluation.",
    words: &["history", "confusion"],
    numbers: &[],
    example: "plot history",
    parse: plot,
};

fn plot(input: &str) -> Res<'_, StatementKind> {
    let (rest, word) = arg("`history` or `confusion`", keyword(&["history", "confusion"]))(input)?;
    Ok((rest, StatementKind::Plot(if word == "history" { PlotKind::History } else { PlotKind::Confusion })))
}

/// The `predict` statement.
const PREDICT: StatementDoc = StatementDoc {
    keyword: "predict",
    synopsis: &["predict PATH"],
    summary: "Classify a picture of a digit (PNG/JPEG) or every picture under a folder (its subfolders too, names starting with `.` skipped; at most 1024), after MNIST-style preprocessing (a 28×28 grey picture of light ink on a dark border is taken as it is); prints a table of each file's top 3 classes with probabilities and draws the inputs in a grid.",
    words: &[],
    numbers: &[],
    example: "predict digits/seven.png",
    parse: predict,
};

fn predict(input: &str) -> Res<'_, StatementKind> {
    map(arg("an image file or a folder of images", path), StatementKind::Predict)(input)
}

/// The `device` statement.
const DEVICE: StatementDoc = StatementDoc {
    keyword: "device",
    synopsis: &["device cpu|cuda"],
    summary: "Where the model computes: a model already built or loaded moves there (weights, batch-norm statistics, adapters), and so do the batches and optimizer state of every fit after it; `save model` writes the same file from either device. cuda needs a build with `--features cuda` (`scripts/cuda build`) and an NVIDIA GPU.",
    words: &["cpu", "cuda"],
    numbers: &[],
    example: "device cpu",
    parse: device,
};

fn device(input: &str) -> Res<'_, StatementKind> {
    map(arg("`cpu` or `cuda`", one_of(&DeviceKind::ALL, DeviceKind::as_str)), StatementKind::Device)(input)
}

/// The `precision` statement.
const PRECISION: StatementDoc = StatementDoc {
    keyword: "precision",
    synopsis: &["precision [fp32|bf16]"],
    summary: "What the convolutions and dense layers multiply in, as Keras' `mixed_bfloat16` policy and PyTorch's bf16 autocast do it: `bf16` rounds both operands of every product to bf16 and sums in f32, on the CPU's AMX tiles or (off Intel) AVX512-BF16 units, on CUDA through candle's bf16 tensors; the weights (the optimizer's master copy), batch-norm statistics, softmax, loss and Adam stay f32. A CPU without such units refuses it (there bf16 would be slower than fp32); products too small to gain (a side under 16, fewer than 48 terms) stay f32. `fp32` (the default) is f32 throughout. It applies to the model now and every model built or loaded after; alone, it shows the precision and the CPU's bf16 units.",
    words: &["fp32", "bf16"],
    numbers: &[],
    example: "precision bf16",
    parse: precision,
};

fn precision(input: &str) -> Res<'_, StatementKind> {
    if preceded(space1::<_, PErr>, token)(input).is_err() {
        return Ok((input, StatementKind::Precision(None)));
    }
    map(arg("`fp32` or `bf16`", one_of(&Precision::ALL, Precision::as_str)), |p| StatementKind::Precision(Some(p)))(
        input,
    )
}

/// The `threads` statement.
const THREADS: StatementDoc = StatementDoc {
    keyword: "threads",
    synopsis: &["threads N"],
    summary: "Worker threads for training and augmentation.",
    words: &[],
    numbers: &[&ranges::THREADS],
    example: "threads 2",
    parse: threads,
};

fn threads(input: &str) -> Res<'_, StatementKind> {
    map(count_arg(&ranges::THREADS), StatementKind::Threads)(input)
}

/// The `export` statement.
const EXPORT: StatementDoc = StatementDoc {
    keyword: "export",
    synopsis: &["export onnx PATH"],
    summary: "Write the model as an ONNX file (opset 13) for deployment: input `image`, float32 N×1×H×W already scaled as in training (the scaling and the class names are in its metadata), outputs `logits` and `probabilities`; batch norm exported with its moving statistics, dropout removed, LoRA adapters merged.",
    words: &["onnx"],
    numbers: &[],
    example: "export onnx mnistlab-out/mnist.onnx",
    parse: export,
};

fn export(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = arg("`onnx`", keyword(&["onnx"]))(input)?;
    map(arg("a file for the ONNX model", path), StatementKind::ExportOnnx)(rest)
}
