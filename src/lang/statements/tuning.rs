//! The fine-tuning statements: freeze, unfreeze, head, adapt, merge, compare. Each one's
//! definition stands above its parser.

use nom::bytes::complete::tag;
use nom::character::complete::space1;
use nom::combinator::{map, opt};
use nom::sequence::{preceded, tuple};

use crate::lang::ast::*;
use crate::lang::combinators::*;
use crate::lang::definition::StatementDoc;
use crate::lang::ranges::{self};

/// The statements of this group, in the order `help` lists them.
pub(crate) const STATEMENTS: &[StatementDoc] = &[FREEZE, UNFREEZE, HEAD, ADAPT, MERGE, COMPARE];

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
    summary: "Table of this session's training runs: model, data, what was frozen or adapted, trainable parameters, epochs, seconds, best validation and test accuracy (the test split is evaluated at the end of each `fit`); runs that differ only by seed are also summarized as mean (min–max).",
    words: &[],
    numbers: &[],
    example: "compare",
    parse: compare,
};

fn compare(input: &str) -> Res<'_, StatementKind> {
    Ok((input, StatementKind::Compare))
}
