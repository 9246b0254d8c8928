//! The fine-tuning and tuning statements: freeze, unfreeze, head, adapt, merge, compare, tune.
//! Each one's definition stands above its parser.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while1};
use nom::character::complete::{char, space0, space1};
use nom::combinator::{map, opt};
use nom::multi::separated_list1;
use nom::sequence::{preceded, tuple};

use super::training::model_words;

use crate::lang::ast::*;
use crate::lang::combinators::*;
use crate::lang::definition::StatementDoc;
use crate::lang::ranges::{self, NumRange};
use crate::model::training::tune::{Search, SearchSpace, Values};
use crate::model::{ModelSpec, Optimizer};

/// The statements of this group, in the order `help` lists them.
pub(crate) const STATEMENTS: &[StatementDoc] = &[FREEZE, UNFREEZE, HEAD, ADAPT, MERGE, COMPARE, TUNE];

/// The `freeze` statement.
const FREEZE: StatementDoc = StatementDoc {
    keyword: "freeze",
    synopsis: &["freeze conv", "freeze N[..M]", "freeze all but head"],
    summary: "Stop training some layers: every convolution and its batch norms, layers N..M as `summary` numbers them, or all but the output layer. Frozen parameters get no gradient and no optimizer state; frozen batch norms run in inference mode. `save model` records them.",
    words: &["conv", "all", "but", "head"],
    numbers: &[&ranges::LAYER],
    example: "freeze all but head",
    parse: freeze,
};

fn freeze(input: &str) -> Res<'_, StatementKind> {
    map(arg("`conv`, `all but head` or layer numbers like `1..3`", layer_selection), StatementKind::Freeze)(input)
}

/// `conv`, `all`, `all but head`, `N` or `N..M` (1-based layer numbers).
fn layer_selection(input: &str) -> Res<'_, LayerSelection> {
    const WHAT: &str = "`conv`, `all but head`, `all` or layer numbers like `1..3`";
    if let Ok((rest, _)) = tag::<_, _, PErr>("conv")(input) {
        return Ok((rest, LayerSelection::Conv));
    }
    if let Ok((rest, _)) = tag::<_, _, PErr>("all")(input) {
        if let Ok((rest, _)) = tuple((space1::<_, PErr>, tag("but")))(rest) {
            let (rest, _) = arg("`head`", keyword(&["head"]))(rest)?;
            return Ok((rest, LayerSelection::AllButHead));
        }
        return Ok((rest, LayerSelection::All));
    }
    let (rest, first) = expect(WHAT, count_in(&ranges::LAYER))(input)?;
    let (rest, last) = opt(preceded(tag(".."), expect_owned(&ranges::LAYER, count_in(&ranges::LAYER))))(rest)?;
    let last = last.unwrap_or(first);
    if last < first {
        return fail(input, "a range whose end is not below its start");
    }
    Ok((rest, LayerSelection::Range(first, last)))
}

/// The `unfreeze` statement.
const UNFREEZE: StatementDoc = StatementDoc {
    keyword: "unfreeze",
    synopsis: &["unfreeze [all]", "unfreeze conv|N[..M]|all but head"],
    summary: "Train frozen layers again: all of them, or those named as in `freeze`.",
    words: &["all", "conv", "but", "head"],
    numbers: &[&ranges::LAYER],
    example: "unfreeze",
    parse: unfreeze,
};

fn unfreeze(input: &str) -> Res<'_, StatementKind> {
    let (rest, selection) = opt(preceded(space1, layer_selection))(input)?;
    Ok((rest, StatementKind::Unfreeze(selection.unwrap_or(LayerSelection::All))))
}

/// The `head` statement.
const HEAD: StatementDoc = StatementDoc {
    keyword: "head",
    synopsis: &["head N"],
    summary: "Replace the output layer with a fresh one (Glorot, from the seed) for N classes, keeping every other layer: output k stands for the k-th class present in the data (after `filter classes 5-9`, outputs 0..4 are the classes 5..9, and predictions say 7, not 2).",
    words: &[],
    numbers: &[&ranges::HEAD],
    example: "head 5",
    parse: head,
};

fn head(input: &str) -> Res<'_, StatementKind> {
    map(count_arg(&ranges::HEAD), StatementKind::Head)(input)
}

/// The `adapt` statement.
const ADAPT: StatementDoc = StatementDoc {
    keyword: "adapt",
    synopsis: &["adapt lora rank R [alpha A]"],
    summary: "Add LoRA adapters (Hu et al. 2021) to the hidden dense layers: W·x + (alpha/R)·B·A·x with A Kaiming-uniform and B zero (alpha defaults to R). The body's own weights are frozen while adapters exist; the adapters and the output layer train. `save model` keeps them.",
    words: &["lora", "rank", "alpha"],
    numbers: &[&ranges::RANK, &ranges::ALPHA],
    example: "adapt lora rank 4 alpha 8",
    parse: adapt,
};

fn adapt(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = arg("`lora`", keyword(&["lora"]))(input)?;
    let (rest, _) = arg("`rank`", keyword(&["rank"]))(rest)?;
    let (rest, rank) = count_arg(&ranges::RANK)(rest)?;
    let (rest, alpha) = opt(preceded(tuple((space1, tag("alpha"))), real_arg(&ranges::ALPHA)))(rest)?;
    Ok((rest, StatementKind::AdaptLora { rank, alpha }))
}

/// The `merge` statement.
const MERGE: StatementDoc = StatementDoc {
    keyword: "merge",
    synopsis: &["merge"],
    summary: "Fold the LoRA adapters into their layers' weights (W + (alpha/R)·B·A) and remove them.",
    words: &[],
    numbers: &[],
    example: "merge",
    parse: merge,
};

fn merge(input: &str) -> Res<'_, StatementKind> {
    Ok((input, StatementKind::Merge))
}

/// The `compare` statement.
const COMPARE: StatementDoc = StatementDoc {
    keyword: "compare",
    synopsis: &["compare"],
    summary: "Table of this session's training runs: model, data (and whether it was augmented), what was frozen or adapted (and the moving average's decay with `ema`), trainable parameters, epochs, seconds, best validation and test accuracy (the test split is evaluated at the end of each `fit`, and again by `evaluate test`, but not with `tta on`); runs that differ only by seed are also summarized as mean (min–max); with an ensemble, its members and the ensemble's own accuracy.",
    words: &[],
    numbers: &[],
    example: "compare",
    parse: compare,
};

fn compare(input: &str) -> Res<'_, StatementKind> {
    Ok((input, StatementKind::Compare))
}

/// The `tune` statement.
const TUNE: StatementDoc = StatementDoc {
    keyword: "tune",
    synopsis: &[
        "tune [trials T] [epochs E] [lr X..X [log]] [batch N,N...] [optimizer NAME,NAME...] [smoothing S..S] [model \"LAYERS\" | \"LAYERS\"...] [prune] [seed S]",
        "tune apply",
    ],
    summary: "Random search (default 16 trials of 3 epochs): each trial a fresh model from the session's seed with drawn settings, trained on the train split and scored on the validation split (the test split is never read). lr and smoothing take a range (uniform, or log-uniform with `log`) or a list `X,X`; batch a list; optimizer a list of adam, adamw, sgd (each at its own defaults unless lr is searched); model quoted architectures or presets. Settings not searched stay as the session has them. `prune`: successive halving (rungs at 1, 3, 9… epochs; a trial goes on only in the top third of the trials that reached its rung so far). A line per trial, then the trials by validation accuracy, a plot, and the best settings as statements, which `tune apply` runs. Every trial is listed by `compare`; Ctrl-C stops the search, keeping the finished trials.",
    words: &["apply", "trials", "epochs", "lr", "batch", "optimizer", "smoothing", "model", "prune", "seed"],
    numbers: &[&ranges::TRIALS, &ranges::TUNE_EPOCHS, &ranges::LR, &ranges::BATCH, &ranges::SMOOTHING, &ranges::SEED],
    example: "tune trials 16 epochs 4 lr 1e-4..1e-2 log batch 32,64,128 optimizer adam,adamw smoothing 0..0.1 prune",
    parse: tune,
};

/// The options of `tune`, each given at most once, in any order.
const TUNE_OPTIONS: &[&str] = &["trials", "epochs", "lr", "batch", "optimizer", "smoothing", "model", "prune", "seed"];

/// Trials and epochs of `tune` without `trials T` / `epochs E`.
const TUNE_DEFAULTS: (usize, usize) = (16, 3);

fn tune(input: &str) -> Res<'_, StatementKind> {
    if let Ok((rest, _)) = preceded(space1::<_, PErr>, tag("apply"))(input) {
        return Ok((rest, StatementKind::TuneApply));
    }
    let (trials, epochs) = TUNE_DEFAULTS;
    let mut search = Search { space: SearchSpace::default(), trials, epochs, prune: false, seed: None };
    let mut seen: Vec<&str> = Vec::new();
    let mut rest = input;
    while let Ok((r, _)) = space1::<_, PErr>(rest) {
        if r.is_empty() {
            break;
        }
        let (after, option) = keyword(TUNE_OPTIONS)(r)?;
        if seen.contains(&option) {
            return fail(r, format!("each option once (`{option}` is given twice)"));
        }
        seen.push(option);
        let space = &mut search.space;
        rest = match option {
            "trials" => {
                let (r, n) = count_arg(&ranges::TRIALS)(after)?;
                search.trials = n;
                r
            }
            "epochs" => {
                let (r, n) = count_arg(&ranges::TUNE_EPOCHS)(after)?;
                search.epochs = n;
                r
            }
            "lr" | "smoothing" => {
                let bounds = if option == "lr" { &ranges::LR } else { &ranges::SMOOTHING };
                let (r, v) = values(bounds)(after)?;
                *(if option == "lr" { &mut space.lr } else { &mut space.smoothing }) = Some(v);
                r
            }
            "batch" => {
                let (r, sizes) = list(&ranges::BATCH.to_string(), count_in(&ranges::BATCH))(after)?;
                space.batch = sizes;
                r
            }
            "optimizer" => {
                let (r, optimizers) = list("one of adam, adamw, sgd", optimizer_name)(after)?;
                space.optimizer = optimizers;
                r
            }
            "model" => {
                let (r, models) = model_list(after)?;
                space.models = models;
                r
            }
            "prune" => {
                search.prune = true;
                after
            }
            _ => {
                let (r, seed) = whole_arg(&ranges::SEED)(after)?;
                search.seed = Some(seed);
                r
            }
        };
    }
    if search.space.is_empty() {
        return fail(rest, "a setting to search: lr, batch, optimizer, smoothing or model");
    }
    Ok((rest, StatementKind::Tune(search)))
}

/// ` A..B [log]` or ` X,Y,...`, each number in `bounds`.
fn values<'a>(bounds: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, Values> {
    move |input: &'a str| {
        let (at, _) = expect_owned(bounds, space1)(input)?;
        match range(bounds)(at) {
            Ok((rest, (low, high))) => {
                let (rest, log) = opt(preceded(space1, tag("log")))(rest)?;
                if log.is_some() && low <= 0.0 {
                    return fail(at, "a range above 0 for `log` (a log-uniform draw never reaches 0)");
                }
                Ok((rest, Values::Range { low, high, log: log.is_some() }))
            }
            Err(nom::Err::Error(_)) => {
                let (rest, list) = expect_owned(bounds, separated_list1(char(','), real_in(bounds)))(at)?;
                if let Some(after) = rest.strip_prefix(',') {
                    return fail(after, bounds.to_string());
                }
                Ok((rest, Values::List(list)))
            }
            Err(e) => Err(e),
        }
    }
}

/// ` A,B,C`: one or more of `item`, separated by commas; missing, it says `what` was expected.
fn list<'a, T>(what: &str, item: impl FnMut(&'a str) -> Res<'a, T>) -> impl FnMut(&'a str) -> Res<'a, Vec<T>> {
    let what: std::borrow::Cow<'static, str> = what.to_string().into();
    let mut items = separated_list1(char(','), item);
    move |input: &'a str| {
        let missing = |at| nom::Err::Failure(PErr { at, expected: what.clone(), suggestion: None });
        let (at, _) = space1::<_, PErr>(input).map_err(|_| missing(input))?;
        let (rest, values) = items(at).map_err(|e| match e {
            nom::Err::Error(_) => missing(at),
            other => other,
        })?;
        match rest.strip_prefix(',') {
            Some(after) => Err(missing(after)),
            None => Ok((rest, values)),
        }
    }
}

/// `adam`, `adamw` or `sgd`, at its defaults (those of `optimizer NAME`).
fn optimizer_name(input: &str) -> Res<'_, Optimizer> {
    const NAMES: [&str; 3] = ["adam", "adamw", "sgd"];
    let (rest, word) = take_while1(|c: char| c.is_ascii_alphanumeric())(input)?;
    let optimizer = match word {
        "adam" => Optimizer::Adam { lr: 1e-3 },
        "adamw" => Optimizer::AdamW { lr: 1e-3, weight_decay: 0.01 },
        "sgd" => Optimizer::Sgd { lr: 0.01, momentum: 0.0 },
        _ => {
            return Err(nom::Err::Failure(PErr {
                at: input,
                expected: "one of adam, adamw, sgd".into(),
                suggestion: closest(word, NAMES).map(str::to_string),
            }))
        }
    };
    Ok((rest, optimizer))
}

/// ` "LAYERS" | "LAYERS" ...` (or commas between): architectures or presets, each quoted.
fn model_list(input: &str) -> Res<'_, Vec<ModelSpec>> {
    const WHAT: &str = "a quoted model like \"conv32 pool dense128\" or \"seed-cnn\"";
    let (mut rest, first) = preceded(expect(WHAT, space1), expect(WHAT, model_string))(input)?;
    let mut models = vec![first];
    while let Ok((r, _)) = tuple((space0::<_, PErr>, alt((char('|'), char(','))), space0))(rest) {
        let (r, model) = expect(WHAT, model_string)(r)?;
        models.push(model);
        rest = r;
    }
    Ok((rest, models))
}

/// `"LAYERS"`: the words of a `model` statement inside quotes; errors point into them.
fn model_string(input: &str) -> Res<'_, ModelSpec> {
    let (body, _) = char('"')(input)?;
    let Some(end) = body.find('"') else {
        return Err(nom::Err::Incomplete(nom::Needed::new(1)));
    };
    let raw = &body[..end];
    let inner = raw.trim_start();
    let start = raw.len() - inner.len();
    if inner.trim().is_empty() {
        return fail(input, "a model's layers or preset inside the quotes (these are empty)");
    }
    // Errors of the model's own parser stand in `inner`; point them into the whole line.
    let at = |e: PErr<'_>| start + (inner.len() - e.at.len());
    let choice = match model_words(inner) {
        Ok((r, choice)) if r.trim().is_empty() => choice,
        Ok((r, _)) => return fail(&body[start + inner.len() - r.len()..], "the end of the model (a closing `\"`)"),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            let (expected, suggestion) = (e.expected.clone(), e.suggestion.clone());
            return Err(nom::Err::Failure(PErr { at: &body[at(e)..], expected, suggestion }));
        }
        Err(nom::Err::Incomplete(n)) => return Err(nom::Err::Incomplete(n)),
    };
    let spec = match choice {
        ModelChoice::Layers(spec) => spec,
        ModelChoice::Preset(name) => match crate::model::preset(&name) {
            Some(spec) => spec,
            None => return fail(&body[start..], "a preset: seed-small, seed-cnn, lenet5, strong, an-m5 or deotte"),
        },
    };
    Ok((&body[end + 1..], spec))
}
