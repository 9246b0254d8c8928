//! The data statements: load, info, show, normalize, standardize, onehot, split, filter,
//! subset, save, augment, expand. Each one's definition (forms, docs, completion words, number
//! ranges) stands above the function that parses it.

use std::path::PathBuf;

use nom::bytes::complete::tag;
use nom::character::complete::{char, space1};
use nom::combinator::{map, opt};
use nom::sequence::{preceded, tuple};

use crate::data::augment::{FlipAxis, Interpolation, Op};
use crate::data::fetch::Named;
use crate::data::saved::SaveFormat;
use crate::data::PixelScaling;
use crate::lang::ast::*;
use crate::lang::combinators::*;
use crate::lang::definition::StatementDoc;
use crate::lang::ranges::{self};

/// The statements of this group, in the order `help` lists them.
pub(crate) const STATEMENTS: &[StatementDoc] =
    &[LOAD, INFO, SHOW, NORMALIZE, STANDARDIZE, ONEHOT, SPLIT, FILTER, SUBSET, SAVE, AUGMENT, EXPAND];

/// The `load` statement.
const LOAD: StatementDoc = StatementDoc {
    keyword: "load",
    synopsis: &[
        "load mnist|fashion-mnist [from PATH]",
        "load idx IMAGES LABELS",
        "load npz PATH",
        "load pkl PATH",
        "load csv PATH",
        "load folder DIR",
        "load DIR",
        "load model PATH",
    ],
    summary: "Load a dataset: a named one (from the cache, fetched if missing), IDX files, a Keras mnist.npz, a deeplearning.net mnist.pkl.gz, a Kaggle CSV, your own pictures (`load folder DIR`: one subfolder of PNG/JPEG pictures per class, as torchvision's ImageFolder and Keras' image_dataset_from_directory read them; classes are the subfolders' names, sorted; each picture MNIST-style preprocessed to 28×28 as `predict` does; all of them in the train split, for `split` to divide; or, when its subfolders are train/, val/ and test/, each with class subfolders, those splits), or a folder written by `save` (`load DIR` also reads a folder without manifest.json that has subfolders as `load folder DIR`); or a model written by `save model`.",
    words: &["mnist", "fashion-mnist", "idx", "npz", "pkl", "csv", "folder", "from", "model"],
    numbers: &[],
    example: "load mnist",
    parse: load,
};

fn load(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = expect(
        "what to load: `mnist`, `fashion-mnist`, `idx`, `npz`, `pkl`, `csv`, `folder` or a folder",
        space1,
    )(input)?;
    let (after, word) = expect("what to load", word_or_quoted)(rest)?;
    let source = |name| {
        map(opt(preceded(tuple((space1, tag("from"))), arg("a folder", path))), move |from| LoadSource::Named {
            name,
            from,
        })
    };
    if let Some(name) = Named::from_name(&word) {
        let (rest, source) = source(name)(after)?;
        return Ok((rest, StatementKind::Load(source)));
    }
    let (rest, source) = match word.as_str() {
        "model" if after.starts_with(char::is_whitespace) => {
            return map(arg("a model file", path), StatementKind::LoadModel)(after);
        }
        "idx" => map(tuple((arg("an images file", path), arg("a labels file", path))), |(images, labels)| {
            LoadSource::Idx { images, labels }
        })(after)?,
        "npz" => map(arg("an .npz file", path), LoadSource::Npz)(after)?,
        "pkl" => map(arg("a .pkl.gz file", path), LoadSource::Pkl)(after)?,
        "csv" => map(arg("a .csv file", path), LoadSource::Csv)(after)?,
        "folder" if after.starts_with(char::is_whitespace) => {
            map(arg("a folder of class subfolders", path), LoadSource::Folder)(after)?
        }
        other => {
            let looks_like_word = !other.contains(['/', '.', '\\']) && !rest.starts_with('"');
            let options = ["mnist", "fashion-mnist", "idx", "npz", "pkl", "csv", "folder"];
            if let (true, Some(s)) = (looks_like_word, closest(other, options)) {
                return Err(nom::Err::Failure(PErr {
                    at: rest,
                    expected: "one of `mnist`, `fashion-mnist`, `idx`, `npz`, `pkl`, `csv`, `folder` or a folder"
                        .into(),
                    suggestion: Some(s.to_string()),
                }));
            }
            (after, LoadSource::Dir(PathBuf::from(other)))
        }
    };
    Ok((rest, StatementKind::Load(source)))
}

/// The `info` statement.
const INFO: StatementDoc = StatementDoc {
    keyword: "info",
    synopsis: &["info"],
    summary: "Per split: count, shape, dtype, class histogram and pixel min/max/mean/std (after normalization).",
    words: &[],
    numbers: &[],
    example: "info",
    parse: info,
};

fn info(input: &str) -> Res<'_, StatementKind> {
    Ok((input, StatementKind::Info))
}

/// The `show` statement.
const SHOW: StatementDoc = StatementDoc {
    keyword: "show",
    synopsis: &["show samples N [SPLIT] [class K]", "show mistakes N"],
    summary: "Draw a grid of N images with their labels, from a split (default train) and optionally one class; or the N test images the model gets most wrong, with true and predicted labels.",
    words: &["samples", "mistakes", "train", "val", "test", "class"],
    numbers: &[&ranges::GRID_COUNT, &ranges::CLASS],
    example: "show samples 16 test class 7",
    parse: show,
};

fn show(input: &str) -> Res<'_, StatementKind> {
    let (rest, what) = arg("`samples` or `mistakes`", keyword(&["samples", "mistakes"]))(input)?;
    if what == "mistakes" {
        return map(count_arg(&ranges::GRID_COUNT), StatementKind::ShowMistakes)(rest);
    }
    let (rest, count) = count_arg(&ranges::GRID_COUNT)(rest)?;
    let (rest, split) = opt(preceded(space1, split_name))(rest)?;
    let (rest, class) = opt(preceded(tuple((space1, tag("class"))), whole_arg(&ranges::CLASS)))(rest)?;
    Ok((rest, StatementKind::ShowSamples { count, split, class: class.map(|c| c as u32) }))
}

/// The `normalize` statement.
const NORMALIZE: StatementDoc = StatementDoc {
    keyword: "normalize",
    synopsis: &["normalize", "normalize -1..1"],
    summary: "Scale pixels to [0, 1] (or [-1, 1]); images stay bytes in memory and are scaled when a batch is made.",
    words: &["-1..1"],
    numbers: &[],
    example: "normalize",
    parse: normalize,
};

fn normalize(input: &str) -> Res<'_, StatementKind> {
    let (rest, range) = opt(preceded(space1, keyword(&["-1..1", "0..1"])))(input)?;
    let range = if range == Some("-1..1") { PixelScaling::Symmetric } else { PixelScaling::Unit };
    Ok((rest, StatementKind::Normalize(range)))
}

/// The `standardize` statement.
const STANDARDIZE: StatementDoc = StatementDoc {
    keyword: "standardize",
    synopsis: &["standardize"],
    summary:
        "Scale pixels to zero mean and unit variance, with mean and std computed on the train split only (and printed).",
    words: &[],
    numbers: &[],
    example: "standardize",
    parse: standardize,
};

fn standardize(input: &str) -> Res<'_, StatementKind> {
    Ok((input, StatementKind::Standardize))
}

/// The `onehot` statement.
const ONEHOT: StatementDoc = StatementDoc {
    keyword: "onehot",
    synopsis: &["onehot"],
    summary: "Mark labels one-hot for saving: `save ... as npz` then writes each split's labels as an N×classes 0/1 array (which `load` reads back), and the manifest records it; IDX, CSV and PNG keep one class number per image, as their formats do. Training is the same either way: cross-entropy on class numbers equals cross-entropy on one-hot targets.",
    words: &[],
    numbers: &[],
    example: "onehot",
    parse: onehot,
};

fn onehot(input: &str) -> Res<'_, StatementKind> {
    Ok((input, StatementKind::OneHot))
}

/// The `split` statement.
const SPLIT: StatementDoc = StatementDoc {
    keyword: "split",
    synopsis: &["split TRAIN/VAL/TEST [seed S]", "split val PERCENT [seed S]"],
    summary: "Stratified split: pool every loaded image and divide it by percentages (the article's 70/15/15), or keep the official test set and carve a validation share from train. Prints each split's class balance and the images that fall in two splits.",
    words: &["val", "seed", "70/15/15", "80/10/10"],
    numbers: &[&ranges::SHARE, &ranges::VAL_PERCENT, &ranges::SEED],
    example: "split 70/15/15 seed 42",
    parse: split,
};

fn split(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = expect("`val PERCENT` or percentages like `70/15/15`", space1)(input)?;
    if let Ok((after, _)) = tag::<_, _, PErr>("val")(rest) {
        let (after, percent) = whole_arg(&ranges::VAL_PERCENT)(after)?;
        let (after, seed) = seed_clause(after)?;
        return Ok((after, StatementKind::Split(SplitSpec::Validation { percent: percent as u32, seed })));
    }
    let pct = |i| map(whole_in(&ranges::SHARE), |v| v as u32)(i);
    let (after, (train, _, val, _, test)) =
        expect("`val PERCENT` or percentages like `70/15/15`", tuple((pct, char('/'), pct, char('/'), pct)))(rest)?;
    if train + val + test != 100 {
        return fail(rest, format!("percentages that add up to 100 (these add up to {})", train + val + test));
    }
    if train == 0 {
        return fail(rest, "a train share above 0");
    }
    let (after, seed) = seed_clause(after)?;
    Ok((after, StatementKind::Split(SplitSpec::Percent { train, val, test, seed })))
}

/// The `filter` statement.
const FILTER: StatementDoc = StatementDoc {
    keyword: "filter",
    synopsis: &["filter classes A-B", "filter classes A,B,C"],
    summary: "Keep only the images of these classes, in every split; classes keep their names.",
    words: &["classes"],
    numbers: &[&ranges::CLASS],
    example: "filter classes 0-4",
    parse: filter,
};

fn filter(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = arg("`classes`", keyword(&["classes"]))(input)?;
    let (rest, classes) = preceded(expect("classes like `0-4` or `1,3,5`", space1), class_list)(rest)?;
    Ok((rest, StatementKind::FilterClasses(classes)))
}

fn class_list(input: &str) -> Res<'_, Vec<u32>> {
    let num = |i| map(whole_in(&ranges::CLASS), |v| v as u32)(i);
    let (rest, first) = expect("a class number", num)(input)?;
    if let Ok((rest, _)) = char::<_, PErr>('-')(rest) {
        let (rest, last) = expect("the last class of the range", num)(rest)?;
        if last < first {
            return fail(input, "a range whose end is not below its start");
        }
        return Ok((rest, (first..=last).collect()));
    }
    let mut classes = vec![first];
    let mut rest = rest;
    while let Ok((r, _)) = char::<_, PErr>(',')(rest) {
        let (r, c) = expect("a class number", num)(r)?;
        if !classes.contains(&c) {
            classes.push(c);
        }
        rest = r;
    }
    Ok((rest, classes))
}

/// The `subset` statement.
const SUBSET: StatementDoc = StatementDoc {
    keyword: "subset",
    synopsis: &["subset N per class [seed S]"],
    summary: "Keep N random images of each class in the train split (few-shot and fine-tuning lessons).",
    words: &["per", "class", "seed"],
    numbers: &[&ranges::PER_CLASS, &ranges::SEED],
    example: "subset 60 per class seed 1",
    parse: subset,
};

fn subset(input: &str) -> Res<'_, StatementKind> {
    let (rest, per_class) = count_arg(&ranges::PER_CLASS)(input)?;
    let (rest, _) = arg("`per class`", keyword(&["per"]))(rest)?;
    let (rest, _) = arg("`class`", keyword(&["class"]))(rest)?;
    let (rest, seed) = seed_clause(rest)?;
    Ok((rest, StatementKind::Subset { per_class, seed }))
}

/// The `save` statement.
const SAVE: StatementDoc = StatementDoc {
    keyword: "save",
    synopsis: &["save DIR [as idx|npz|csv|png]", "save model PATH", "save history PATH.csv|json"],
    summary: "Write every split and a manifest.json (source and checksums, the statements that produced it, seed, class counts, normalization, SHA-256 of every file) atomically into DIR; or save the model (safetensors with its spec, classes and normalization); or the last fit's per-epoch history (loss, accuracy, validation, rate, seconds, images/s) as CSV or JSON by the file's extension, for other trackers.",
    words: &["as", "idx", "npz", "csv", "png", "model", "history"],
    numbers: &[],
    example: "save prepared/mnist-70-15-15",
    parse: save,
};

fn save(input: &str) -> Res<'_, StatementKind> {
    if let Ok((rest, _)) = tuple((space1::<_, PErr>, tag("model"), space1))(input) {
        return map(expect("a file for the model", path), StatementKind::SaveModel)(rest);
    }
    if let Ok((rest, _)) = tuple((space1::<_, PErr>, tag("history"), space1))(input) {
        return map(expect("a .csv or .json file for the history", path), StatementKind::SaveHistory)(rest);
    }
    let (rest, dir) = arg("a folder to save into", path)(input)?;
    let (rest, format) =
        opt(preceded(tuple((space1, tag("as"))), arg("a format", one_of(&SaveFormat::ALL, SaveFormat::as_str))))(rest)?;
    let format = format.unwrap_or_default();
    Ok((rest, StatementKind::Save { dir, format }))
}

/// The `augment` statement.
const AUGMENT: StatementDoc = StatementDoc {
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
    parse: augment,
};

fn augment(input: &str) -> Res<'_, StatementKind> {
    let Ok((after, word)) = preceded(space1::<_, PErr>, token)(input) else {
        return Ok((input, StatementKind::Augment(AugmentSpec::Show)));
    };
    match word {
        "off" => return Ok((after, StatementKind::Augment(AugmentSpec::Off))),
        "preview" => {
            let (rest, n) = count_arg(&ranges::PREVIEW)(after)?;
            return Ok((rest, StatementKind::Augment(AugmentSpec::Preview(n))));
        }
        _ => {}
    }
    let (mut ops, mut force, mut interpolation) = (Vec::new(), false, Interpolation::Bilinear);
    let mut rest = input;
    while let Ok((r, _)) = space1::<_, PErr>(rest) {
        if r.is_empty() {
            break;
        }
        let (r, word) = keyword(AUGMENT_WORDS)(r)?;
        rest = match word {
            "force" => {
                force = true;
                r
            }
            "nearest" => {
                interpolation = Interpolation::Nearest;
                r
            }
            _ => {
                let (r, op) = augment_op(word, r)?;
                ops.push(op);
                r
            }
        };
    }
    if ops.is_empty() {
        return fail(
            input.trim_start(),
            "an operation: rotate, shift, scale, shear, crop, flip, elastic, noise or erase",
        );
    }
    Ok((rest, StatementKind::Augment(AugmentSpec::Ops { ops, force, interpolation })))
}

const AUGMENT_WORDS: &[&str] =
    &["rotate", "shift", "scale", "shear", "crop", "flip", "elastic", "noise", "erase", "force", "nearest"];

/// The arguments of the augmentation operation `word`, as the data layer's [`Op`].
fn augment_op<'a>(word: &str, r: &'a str) -> Res<'a, Op> {
    let deg = |r| map(real_arg(&ranges::ROTATE), |d| Op::rotate(d as f32))(r);
    match word {
        "rotate" => deg(r),
        "shift" => shift(r),
        "scale" => {
            map(arg("a zoom range like 0.9..1.1", range(&ranges::SCALE)), |(a, b)| Op::scale(a as f32, b as f32))(r)
        }
        "shear" => map(real_arg(&ranges::SHEAR), |d| Op::shear(d as f32))(r),
        "crop" => map(whole_arg(&ranges::CROP), |p| Op::crop(p as usize))(r),
        "flip" => map(arg("`h` or `v`", one_of(&FlipAxis::ALL, FlipAxis::as_str)), Op::flip)(r),
        "elastic" => map(tuple((real_arg(&ranges::ELASTIC_ALPHA), real_arg(&ranges::ELASTIC_SIGMA))), |(a, s)| {
            Op::elastic(a as f32, s as f32)
        })(r),
        "noise" => map(real_arg(&ranges::NOISE), |x| Op::noise(x as f32))(r),
        _ => map(real_arg(&ranges::ERASE), |p| Op::erase(p as f32))(r),
    }
}

/// `shift FRAC` (a fraction of the side) or `shift Npx` (pixels).
fn shift(r: &str) -> Res<'_, Op> {
    let (r2, amount) = arg("a fraction of the side (0.1) or pixels (3px)", number)(r)?;
    let at = r.trim_start();
    match tag::<_, _, PErr>("px")(r2) {
        Ok((r3, _)) if ranges::SHIFT_PIXELS.contains(amount) => Ok((r3, Op::shift_pixels(amount as f32))),
        Ok(_) => fail(at, ranges::SHIFT_PIXELS.to_string()),
        Err(_) if ranges::SHIFT_FRACTION.contains(amount) => Ok((r2, Op::shift(amount as f32))),
        Err(_) => fail(at, format!("{} (or pixels like `3px`)", ranges::SHIFT_FRACTION)),
    }
}

/// The `expand` statement.
const EXPAND: StatementDoc = StatementDoc {
    keyword: "expand",
    synopsis: &["expand Nx"],
    summary:
        "Make the train split N times its size now: the originals plus N-1 augmented copies (recorded in the manifest).",
    words: &["2x", "3x"],
    numbers: &[&ranges::EXPAND],
    example: "expand 2x",
    parse: expand,
};

fn expand(input: &str) -> Res<'_, StatementKind> {
    let (rest, (n, _)) = preceded(
        expect("a factor like `2x`", space1),
        tuple((
            expect_owned(&ranges::EXPAND, count_in(&ranges::EXPAND)),
            expect("`x` after the factor, like `2x`", char('x')),
        )),
    )(input)?;
    Ok((rest, StatementKind::Expand(n)))
}
