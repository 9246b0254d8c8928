//! The nom parser: one statement per line, `#` starts a comment.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use nom::branch::alt;
use nom::bytes::complete::{escaped_transform, is_not, tag, take_while1};
use nom::character::complete::{char, digit1, space0, space1};
use nom::combinator::{map, map_res, opt, recognize, value};
use nom::sequence::{delimited, preceded, tuple};
use nom::IResult;

use super::ast::*;
use super::docs;
use super::ranges::{self, NumRange};

/// A syntax error, with everything needed to show it under its line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub col: usize,
    /// The whole source line.
    pub line_text: String,
    /// What the parser expected at that place.
    pub expected: String,
    /// A close keyword, when the word there looks misspelt.
    pub suggestion: Option<String>,
    /// Whether the line is wrong, or only unfinished.
    pub kind: ParseErrorKind,
}

/// What kind of syntax error a [`ParseError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The line does not parse.
    Invalid,
    /// The line ends inside a `"string"`: only more text could complete it.
    UnclosedQuote,
}

impl ParseError {
    /// Whether the line ends inside a `"string"` (the quote is still open).
    pub fn is_unclosed_quote(&self) -> bool {
        self.kind == ParseErrorKind::UnclosedQuote
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}:{}: expected {}", self.line, self.col, self.expected)?;
        let gutter = self.line.to_string();
        writeln!(f, "  {} | {}", gutter, self.line_text)?;
        write!(f, "  {} | {}^", " ".repeat(gutter.len()), caret_padding(&self.line_text, self.col))?;
        if let Some(s) = &self.suggestion {
            write!(f, "\n  did you mean `{s}`?")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// The blanks that put a caret under character `col` (1-based) of `line` in a terminal: tabs
/// stay tabs, wide characters (CJK, full-width) take two columns, combining marks none.
fn caret_padding(line: &str, col: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    let mut pad = String::new();
    for c in line.chars().take(col.saturating_sub(1)) {
        if c == '\t' {
            pad.push('\t');
        } else {
            pad.extend(std::iter::repeat_n(' ', c.width().unwrap_or(0)));
        }
    }
    pad
}

/// The parser's internal error: where, and what was expected there.
#[derive(Debug)]
struct PErr<'a> {
    at: &'a str,
    expected: Cow<'static, str>,
    suggestion: Option<String>,
}

impl<'a> nom::error::ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, _kind: nom::error::ErrorKind) -> Self {
        PErr { at: input, expected: Cow::Borrowed("valid syntax"), suggestion: None }
    }
    fn append(_input: &'a str, _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
    fn or(self, other: Self) -> Self {
        // Keep whichever got further into the line.
        if other.at.len() <= self.at.len() {
            other
        } else {
            self
        }
    }
}

impl<'a, E> nom::error::FromExternalError<&'a str, E> for PErr<'a> {
    fn from_external_error(input: &'a str, _kind: nom::error::ErrorKind, _e: E) -> Self {
        PErr { at: input, expected: Cow::Borrowed("a number that fits"), suggestion: None }
    }
}

type Res<'a, T> = IResult<&'a str, T, PErr<'a>>;

fn fail<'a, T>(at: &'a str, expected: impl Into<Cow<'static, str>>) -> Res<'a, T> {
    Err(nom::Err::Failure(PErr { at, expected: expected.into(), suggestion: None }))
}

/// Runs `parser`; turns a recoverable error into a failure that says `what` was expected.
fn expect<'a, T>(what: &'static str, parser: impl FnMut(&'a str) -> Res<'a, T>) -> impl FnMut(&'a str) -> Res<'a, T> {
    expect_with(move || Cow::Borrowed(what), parser)
}

/// Like [`expect`], with what was expected made only when a failure needs it.
fn expect_with<'a, T>(
    what: impl Fn() -> Cow<'static, str>,
    mut parser: impl FnMut(&'a str) -> Res<'a, T>,
) -> impl FnMut(&'a str) -> Res<'a, T> {
    move |input: &'a str| match parser(input) {
        Err(nom::Err::Error(e)) => Err(nom::Err::Failure(PErr { at: e.at, expected: what(), suggestion: None })),
        other => other,
    }
}

/// The closest of `options` to `word`, when it is close enough to be a typo.
pub fn closest<'o>(word: &str, options: impl IntoIterator<Item = &'o str>) -> Option<&'o str> {
    let word = word.to_ascii_lowercase();
    options
        .into_iter()
        .map(|o| (strsim::damerau_levenshtein(&word, o), o))
        .filter(|(d, o)| *d > 0 && *d <= 2.max(o.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

/// A run of non-space characters.
fn token(input: &str) -> Res<'_, &str> {
    take_while1(|c: char| !c.is_whitespace())(input)
}

/// One of `options`, failing with a list of them (and a suggestion) otherwise.
fn keyword<'a>(options: &'static [&'static str]) -> impl FnMut(&'a str) -> Res<'a, &'static str> {
    move |input: &'a str| {
        let list = options.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ");
        let expected = if options.len() == 1 { list } else { format!("one of {list}") };
        let Ok((rest, word)) = token(input) else {
            return fail(input, expected);
        };
        match options.iter().find(|o| **o == word) {
            Some(o) => Ok((rest, *o)),
            None => Err(nom::Err::Failure(PErr {
                at: input,
                expected: expected.into(),
                suggestion: closest(word, options.iter().copied()).map(str::to_string),
            })),
        }
    }
}

/// A whole number in `range`: a number outside it (or too long to hold) fails with the caret
/// under it; no digits at all is a recoverable error.
fn whole_in<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, u64> {
    move |input: &'a str| {
        let (rest, digits) = digit1(input)?;
        // `12.5` or `1e3` where a whole number belongs: refuse it whole, not at the `.`.
        if number(input).is_ok_and(|(after, _)| after.len() < rest.len()) {
            return fail(input, range.to_string());
        }
        match digits.parse::<u64>() {
            Ok(v) if range.contains(v as f64) => Ok((rest, v)),
            _ => fail(input, range.to_string()),
        }
    }
}

/// A whole number in `range`, as a `usize` (every range fits one).
fn count_in<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, usize> {
    map(whole_in(range), |v| usize::try_from(v).unwrap_or(usize::MAX))
}

/// A decimal number in `range` (finite, within its bounds).
fn real_in<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, f64> {
    move |input: &'a str| {
        let (rest, x) = number(input)?;
        if !range.contains(x) {
            return fail(input, range.to_string());
        }
        Ok((rest, x))
    }
}

/// ` NUMBER` after a space, a whole number in `range`; missing, it says what was expected.
fn whole_arg<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, u64> {
    preceded(expect_owned(range, space1), expect_owned(range, whole_in(range)))
}

/// ` NUMBER` after a space, as a `usize`.
fn count_arg<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, usize> {
    preceded(expect_owned(range, space1), expect_owned(range, count_in(range)))
}

/// ` NUMBER` after a space, a decimal number in `range`.
fn real_arg<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, f64> {
    preceded(expect_owned(range, space1), expect_owned(range, real_in(range)))
}

/// Like [`expect`], with the range's own description as what was expected.
fn expect_owned<'a, T>(
    range: &'static NumRange,
    parser: impl FnMut(&'a str) -> Res<'a, T>,
) -> impl FnMut(&'a str) -> Res<'a, T> {
    expect_with(move || Cow::Owned(range.to_string()), parser)
}

/// A `"string"` with the escapes `\\`, `\"` and `\n`. A line that ends inside the string (no
/// `"` is left to close it) is not wrong but unfinished: that failure is `Incomplete`, which
/// [`parse_line`] reports as an unclosed quote.
fn quoted(input: &str) -> Res<'_, String> {
    delimited(
        char('"'),
        map(
            opt(escaped_transform(
                is_not("\\\""),
                '\\',
                alt((value("\\", tag("\\")), value("\"", tag("\"")), value("\n", tag("n")))),
            )),
            Option::unwrap_or_default,
        ),
        |rest| match expect(CLOSING_QUOTE, char('"'))(rest) {
            Err(nom::Err::Failure(_)) if !rest.contains('"') => Err(nom::Err::Incomplete(nom::Needed::new(1))),
            other => other,
        },
    )(input)
}

/// What an unclosed `"string"` lacks.
const CLOSING_QUOTE: &str = "a closing `\"`";

/// A path: a quoted string, or a run of non-space characters.
fn path(input: &str) -> Res<'_, PathBuf> {
    alt((map(quoted, PathBuf::from), map(token, PathBuf::from)))(input)
}

fn arg<'a, T>(what: &'static str, parser: impl FnMut(&'a str) -> Res<'a, T>) -> impl FnMut(&'a str) -> Res<'a, T> {
    preceded(expect(what, space1), expect(what, parser))
}

/// `seed S` as an optional trailing clause.
fn seed_clause(input: &str) -> Res<'_, Option<u64>> {
    opt(preceded(tuple((space1, tag("seed"))), whole_arg(&ranges::SEED)))(input)
}

fn load(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) =
        expect("what to load: `mnist`, `fashion-mnist`, `idx`, `npz`, `pkl`, `csv` or a folder", space1)(input)?;
    let (after, word) = expect("what to load", word_or_quoted)(rest)?;
    let source = |name| {
        map(opt(preceded(tuple((space1, tag("from"))), arg("a folder", path))), move |from| LoadSource::Named {
            name,
            from,
        })
    };
    let (rest, source) = match word.as_str() {
        "model" if after.starts_with(char::is_whitespace) => {
            return map(arg("a model file", path), StatementKind::LoadModel)(after);
        }
        "mnist" => source(DatasetName::Mnist)(after)?,
        "fashion-mnist" | "fashion" => source(DatasetName::FashionMnist)(after)?,
        "idx" => map(tuple((arg("an images file", path), arg("a labels file", path))), |(images, labels)| {
            LoadSource::Idx { images, labels }
        })(after)?,
        "npz" => map(arg("an .npz file", path), LoadSource::Npz)(after)?,
        "pkl" => map(arg("a .pkl.gz file", path), LoadSource::Pkl)(after)?,
        "csv" => map(arg("a .csv file", path), LoadSource::Csv)(after)?,
        other => {
            let looks_like_word = !other.contains(['/', '.', '\\']) && !rest.starts_with('"');
            let options = ["mnist", "fashion-mnist", "idx", "npz", "pkl", "csv"];
            if let (true, Some(s)) = (looks_like_word, closest(other, options)) {
                return Err(nom::Err::Failure(PErr {
                    at: rest,
                    expected: "one of `mnist`, `fashion-mnist`, `idx`, `npz`, `pkl`, `csv` or a folder".into(),
                    suggestion: Some(s.to_string()),
                }));
            }
            (after, LoadSource::Dir(PathBuf::from(other)))
        }
    };
    Ok((rest, StatementKind::Load(source)))
}

/// A quoted string or a bare word, as an owned string.
fn word_or_quoted(input: &str) -> Res<'_, String> {
    alt((quoted, map(token, str::to_string)))(input)
}

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

fn split_name(input: &str) -> Res<'_, SplitName> {
    let (rest, word) = take_while1(|c: char| c.is_ascii_alphabetic())(input)?;
    match SplitName::from_word(word) {
        Some(name) => Ok((rest, name)),
        None => Err(nom::Err::Error(PErr { at: input, expected: "a split name".into(), suggestion: None })),
    }
}

fn normalize(input: &str) -> Res<'_, StatementKind> {
    let (rest, range) = opt(preceded(space1, keyword(&["-1..1", "0..1"])))(input)?;
    let range = if range == Some("-1..1") { NormalizeRange::Symmetric } else { NormalizeRange::Unit };
    Ok((rest, StatementKind::Normalize(range)))
}

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

fn filter(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = arg("`classes`", keyword(&["classes"]))(input)?;
    let (rest, classes) = preceded(expect("classes like `0-4` or `1,3,5`", space1), class_list)(rest)?;
    Ok((rest, StatementKind::FilterClasses(classes)))
}

fn subset(input: &str) -> Res<'_, StatementKind> {
    let (rest, per_class) = count_arg(&ranges::PER_CLASS)(input)?;
    let (rest, _) = arg("`per class`", keyword(&["per"]))(rest)?;
    let (rest, _) = arg("`class`", keyword(&["class"]))(rest)?;
    let (rest, seed) = seed_clause(rest)?;
    Ok((rest, StatementKind::Subset { per_class, seed }))
}

fn save(input: &str) -> Res<'_, StatementKind> {
    if let Ok((rest, _)) = tuple((space1::<_, PErr>, tag("model"), space1))(input) {
        return map(expect("a file for the model", path), StatementKind::SaveModel)(rest);
    }
    let (rest, dir) = arg("a folder to save into", path)(input)?;
    let (rest, format) =
        opt(preceded(tuple((space1, tag("as"))), arg("a format", keyword(&["idx", "npz", "csv", "png"]))))(rest)?;
    let format = match format {
        Some("npz") => SaveFormat::Npz,
        Some("csv") => SaveFormat::Csv,
        Some("png") => SaveFormat::Png,
        _ => SaveFormat::Idx,
    };
    Ok((rest, StatementKind::Save { dir, format }))
}

fn print(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = space0(input)?;
    if rest.starts_with('"') {
        let (rest, text) = quoted(rest)?;
        return Ok((rest, StatementKind::Print(text)));
    }
    Ok(("", StatementKind::Print(rest.trim_end().to_string())))
}

fn help(input: &str) -> Res<'_, StatementKind> {
    map(opt(preceded(space1, token)), |w: Option<&str>| StatementKind::Help(w.map(str::to_string)))(input)
}

/// A decimal number: `-0.5`, `10`, `1e-3`, `.25`.
fn number(input: &str) -> Res<'_, f64> {
    map_res(
        recognize(tuple((
            opt(char('-')),
            alt((recognize(tuple((digit1, opt(tuple((char('.'), digit1)))))), recognize(tuple((char('.'), digit1))))),
            opt(tuple((alt((char('e'), char('E'))), opt(alt((char('+'), char('-')))), digit1))),
        ))),
        str::parse::<f64>,
    )(input)
}

/// `A..B`, both ends in `bounds`.
fn range<'a>(bounds: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, (f64, f64)> {
    move |input: &'a str| {
        let (rest, (a, _, b)) = tuple((real_in(bounds), tag(".."), real_in(bounds)))(input)?;
        if b < a {
            return fail(input, "a range whose end is not below its start");
        }
        Ok((rest, (a, b)))
    }
}

const AUGMENT_WORDS: &[&str] =
    &["rotate", "shift", "scale", "shear", "crop", "flip", "elastic", "noise", "erase", "force", "nearest"];

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
    let (mut ops, mut force, mut nearest) = (Vec::new(), false, false);
    let mut rest = input;
    while let Ok((r, _)) = space1::<_, PErr>(rest) {
        if r.is_empty() {
            break;
        }
        let (r, word) = keyword(AUGMENT_WORDS)(r)?;
        let (r, op) = match word {
            "rotate" => map(real_arg(&ranges::ROTATE), AugmentOp::Rotate)(r)?,
            "shift" => {
                let (r2, amount) = arg("a fraction of the side (0.1) or pixels (3px)", number)(r)?;
                let at = r.trim_start();
                match tag::<_, _, PErr>("px")(r2) {
                    Ok((r3, _)) if ranges::SHIFT_PIXELS.contains(amount) => {
                        (r3, AugmentOp::Shift { amount, pixels: true })
                    }
                    Ok(_) => return fail(at, ranges::SHIFT_PIXELS.to_string()),
                    Err(_) if ranges::SHIFT_FRACTION.contains(amount) => {
                        (r2, AugmentOp::Shift { amount, pixels: false })
                    }
                    Err(_) => return fail(at, format!("{} (or pixels like `3px`)", ranges::SHIFT_FRACTION)),
                }
            }
            "scale" => {
                map(arg("a zoom range like 0.9..1.1", range(&ranges::SCALE)), |(a, b)| AugmentOp::Scale(a, b))(r)?
            }
            "shear" => map(real_arg(&ranges::SHEAR), AugmentOp::Shear)(r)?,
            "crop" => map(whole_arg(&ranges::CROP), |p| AugmentOp::Crop(p as u32))(r)?,
            "flip" => map(arg("`h` or `v`", keyword(&["h", "v"])), |w| {
                AugmentOp::Flip(if w == "h" { FlipAxis::Horizontal } else { FlipAxis::Vertical })
            })(r)?,
            "elastic" => {
                map(tuple((real_arg(&ranges::ELASTIC_ALPHA), real_arg(&ranges::ELASTIC_SIGMA))), |(alpha, sigma)| {
                    AugmentOp::Elastic { alpha, sigma }
                })(r)?
            }
            "noise" => map(real_arg(&ranges::NOISE), AugmentOp::Noise)(r)?,
            "erase" => map(real_arg(&ranges::ERASE), AugmentOp::Erase)(r)?,
            "force" => {
                force = true;
                rest = r;
                continue;
            }
            _ => {
                nearest = true;
                rest = r;
                continue;
            }
        };
        ops.push(op);
        rest = r;
    }
    if ops.is_empty() {
        return fail(
            input.trim_start(),
            "an operation: rotate, shift, scale, shear, crop, flip, elastic, noise or erase",
        );
    }
    Ok((rest, StatementKind::Augment(AugmentSpec::Ops { ops, force, nearest })))
}

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

const PRESETS: &[&str] = &["seed-small", "seed-cnn", "lenet5", "strong"];
const LAYER_WORDS: &[&str] = &["conv32", "conv64k5", "same", "pool", "avgpool", "bn", "dropout", "dense128", "gap"];

fn layer(input: &str) -> Res<'_, LayerWord> {
    let (rest, word) = token(input)?;
    fn digits(s: &str) -> Option<&str> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
    }
    // A width in range, or a failure with the caret under the word.
    let width = |text: &str, range: &'static NumRange| match text.parse::<u64>() {
        Ok(n) if range.contains(n as f64) => Ok(n as usize),
        _ => Err(nom::Err::Failure(PErr { at: input, expected: range.to_string().into(), suggestion: None })),
    };
    let layer = if let Some(spec) = word.strip_prefix("conv") {
        let (filters, kernel) = match spec.split_once('k') {
            Some((f, k)) => (digits(f), digits(k)),
            None => (digits(spec), Some("3")),
        };
        match (filters, kernel) {
            (Some(filters), Some(kernel)) => {
                let filters = width(filters, &ranges::FILTERS)?;
                let kernel = match kernel {
                    "3" => 3,
                    "5" => 5,
                    _ => return fail(input, "a kernel size of 3 (`conv32`) or 5 (`conv32k5`)"),
                };
                let (rest, same) = opt(preceded(space1, tag("same")))(rest)?;
                return Ok((rest, LayerWord::Conv { filters, kernel, same: same.is_some() }));
            }
            _ => None,
        }
    } else if let Some(n) = word.strip_prefix("dense") {
        match digits(n) {
            Some(n) => Some(LayerWord::Dense(width(n, &ranges::UNITS)?)),
            None => None,
        }
    } else {
        match word {
            "pool" | "maxpool" => Some(LayerWord::MaxPool),
            "avgpool" => Some(LayerWord::AvgPool),
            "bn" => Some(LayerWord::BatchNorm),
            "gap" => Some(LayerWord::GlobalAvgPool),
            "dropout" => {
                let (rest, p) = real_arg(&ranges::DROPOUT)(rest)?;
                return Ok((rest, LayerWord::Dropout(p)));
            }
            _ => None,
        }
    };
    match layer {
        Some(l) => Ok((rest, l)),
        None => Err(nom::Err::Failure(PErr {
            at: input,
            expected: "a layer: convN, convNk5, pool, avgpool, bn, dropout P, denseN or gap".into(),
            suggestion: closest(word, LAYER_WORDS.iter().chain(PRESETS).copied()).map(str::to_string),
        })),
    }
}

fn model(input: &str) -> Res<'_, StatementKind> {
    let (first, _) =
        expect("a preset (seed-small, seed-cnn, lenet5, strong) or layers like `conv32 pool dense128`", space1)(input)?;
    if let Ok((rest, word)) = token(first) {
        if PRESETS.contains(&word) {
            return Ok((rest, StatementKind::Model(ModelChoice::Preset(word.to_string()))));
        }
    }
    let (mut rest, first_layer) = layer(first)?;
    let mut layers = vec![first_layer];
    while let Ok((r, _)) = space1::<_, PErr>(rest) {
        if r.is_empty() {
            break;
        }
        let (r, l) = layer(r)?;
        layers.push(l);
        rest = r;
    }
    Ok((rest, StatementKind::Model(ModelChoice::Layers(layers))))
}

fn optimizer(input: &str) -> Res<'_, StatementKind> {
    let (mut rest, kind) = arg("`adam`, `adamw` or `sgd`", keyword(&["adam", "adamw", "sgd"]))(input)?;
    let kind = match kind {
        "adam" => OptimizerKind::Adam,
        "adamw" => OptimizerKind::AdamW,
        _ => OptimizerKind::Sgd,
    };
    let mut spec = OptimizerSpec { kind, lr: None, momentum: None, decay: None, body_lr: None };
    while let Ok((r, _)) = space1::<_, PErr>(rest) {
        if r.is_empty() {
            break;
        }
        let (r, option) = keyword(&["lr", "momentum", "decay", "body"])(r)?;
        let bounds = match option {
            "lr" => &ranges::LR,
            "momentum" => &ranges::MOMENTUM,
            "decay" => &ranges::DECAY,
            _ => &ranges::BODY_LR,
        };
        let (r, value) = real_arg(bounds)(r)?;
        match option {
            "lr" => spec.lr = Some(value),
            "momentum" => spec.momentum = Some(value),
            "decay" => spec.decay = Some(value),
            _ => spec.body_lr = Some(value),
        }
        rest = r;
    }
    Ok((rest, StatementKind::Optimizer(spec)))
}

fn schedule(input: &str) -> Res<'_, StatementKind> {
    let (rest, word) = arg("a schedule", keyword(&["constant", "onecycle", "cosine", "step"]))(input)?;
    let kind = match word {
        "constant" => ScheduleKind::Constant,
        "onecycle" => ScheduleKind::OneCycle,
        "cosine" => ScheduleKind::Cosine,
        _ => {
            let (rest, every) = opt(preceded(tuple((space1, tag("every"))), count_arg(&ranges::STEP_EVERY)))(rest)?;
            let (rest, factor) = opt(preceded(tuple((space1, tag("factor"))), real_arg(&ranges::STEP_FACTOR)))(rest)?;
            let kind = ScheduleKind::Step { every: every.unwrap_or(3), factor: factor.unwrap_or(0.5) };
            return Ok((rest, StatementKind::Schedule(kind)));
        }
    };
    Ok((rest, StatementKind::Schedule(kind)))
}

fn loss(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = arg("`crossentropy`", keyword(&["crossentropy"]))(input)?;
    let (rest, smoothing) = opt(preceded(tuple((space1, tag("smoothing"))), real_arg(&ranges::SMOOTHING)))(rest)?;
    Ok((rest, StatementKind::Loss { smoothing }))
}

fn fit(input: &str) -> Res<'_, StatementKind> {
    let (rest, epochs) = count_arg(&ranges::EPOCHS)(input)?;
    let (rest, patience) = opt(preceded(tuple((space1, tag("patience"))), count_arg(&ranges::PATIENCE)))(rest)?;
    Ok((rest, StatementKind::Fit { epochs, patience }))
}

fn evaluate(input: &str) -> Res<'_, StatementKind> {
    let (rest, split) = opt(preceded(space1, expect("`test`, `val` or `train`", split_name)))(input)?;
    Ok((rest, StatementKind::Evaluate(split)))
}

fn plot(input: &str) -> Res<'_, StatementKind> {
    let (rest, word) = arg("`history` or `confusion`", keyword(&["history", "confusion"]))(input)?;
    Ok((rest, StatementKind::Plot(if word == "history" { PlotKind::History } else { PlotKind::Confusion })))
}

fn device(input: &str) -> Res<'_, StatementKind> {
    let (rest, word) = arg("`cpu` or `cuda`", keyword(&["cpu", "cuda"]))(input)?;
    Ok((rest, StatementKind::Device(if word == "cpu" { DeviceKind::Cpu } else { DeviceKind::Cuda })))
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

fn freeze(input: &str) -> Res<'_, StatementKind> {
    map(arg("`conv`, `all but head` or layer numbers like `1..3`", layer_selection), StatementKind::Freeze)(input)
}

fn unfreeze(input: &str) -> Res<'_, StatementKind> {
    let (rest, selection) = opt(preceded(space1, layer_selection))(input)?;
    Ok((rest, StatementKind::Unfreeze(selection.unwrap_or(LayerSelection::All))))
}

fn adapt(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = arg("`lora`", keyword(&["lora"]))(input)?;
    let (rest, _) = arg("`rank`", keyword(&["rank"]))(rest)?;
    let (rest, rank) = count_arg(&ranges::RANK)(rest)?;
    let (rest, alpha) = opt(preceded(tuple((space1, tag("alpha"))), real_arg(&ranges::ALPHA)))(rest)?;
    Ok((rest, StatementKind::AdaptLora { rank, alpha }))
}

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

fn statement(input: &str) -> Res<'_, StatementKind> {
    let (rest, word) = recognize(take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'))(input)
        .map_err(|_: nom::Err<PErr>| {
            nom::Err::Failure(PErr { at: input, expected: "a statement".into(), suggestion: None })
        })?;
    let (rest, kind) = match word {
        "load" => load(rest)?,
        "info" => (rest, StatementKind::Info),
        "show" => show(rest)?,
        "normalize" => normalize(rest)?,
        "standardize" => (rest, StatementKind::Standardize),
        "onehot" => (rest, StatementKind::OneHot),
        "split" => split(rest)?,
        "filter" => filter(rest)?,
        "subset" => subset(rest)?,
        "save" => save(rest)?,
        "seed" => map(whole_arg(&ranges::SEED), StatementKind::Seed)(rest)?,
        "help" => help(rest)?,
        "run" => map(arg("a script file", path), StatementKind::Run)(rest)?,
        "print" => print(rest)?,
        "augment" => augment(rest)?,
        "expand" => expand(rest)?,
        "model" => model(rest)?,
        "summary" => (rest, StatementKind::Summary),
        "optimizer" => optimizer(rest)?,
        "schedule" => schedule(rest)?,
        "batch" => map(count_arg(&ranges::BATCH), StatementKind::Batch)(rest)?,
        "memory" => memory(rest)?,
        "loss" => loss(rest)?,
        "fit" => fit(rest)?,
        "evaluate" => evaluate(rest)?,
        "plot" => plot(rest)?,
        "predict" => map(arg("an image file or a folder of images", path), StatementKind::Predict)(rest)?,
        "device" => device(rest)?,
        "threads" => map(count_arg(&ranges::THREADS), StatementKind::Threads)(rest)?,
        "freeze" => freeze(rest)?,
        "unfreeze" => unfreeze(rest)?,
        "head" => map(count_arg(&ranges::HEAD), StatementKind::Head)(rest)?,
        "adapt" => adapt(rest)?,
        "merge" => (rest, StatementKind::Merge),
        "compare" => (rest, StatementKind::Compare),
        other => {
            let known: Vec<&str> = docs::keywords().collect();
            return Err(nom::Err::Failure(PErr {
                at: input,
                expected: Cow::Owned(format!("a statement, not `{other}` (try `help`)")),
                suggestion: closest(other, known).map(str::to_string),
            }));
        }
    };
    let (rest, _) = space0(rest)?;
    if !rest.is_empty() {
        return fail(rest, "the end of the statement");
    }
    Ok((rest, kind))
}

/// Removes a trailing `# comment` (a `#` at the start of a word, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut in_quotes, mut escaped) = (false, false);
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '#' if !in_quotes && prev_space => return &line[..i],
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// `line` with every Unicode space outside quotes (U+3000 from Chinese input methods, no-break
/// spaces, …) made an ASCII space: one character for one, so columns stay the same.
fn normalize_spaces(line: &str) -> Cow<'_, str> {
    if line.chars().all(|c| c.is_ascii() || !c.is_whitespace()) {
        return Cow::Borrowed(line);
    }
    let (mut in_quotes, mut escaped) = (false, false);
    Cow::Owned(
        line.chars()
            .map(|c| {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_quotes => escaped = true,
                    '"' => in_quotes = !in_quotes,
                    _ => {}
                }
                if !in_quotes && c.is_whitespace() && c != '\n' {
                    ' '
                } else {
                    c
                }
            })
            .collect(),
    )
}

/// Parses one source line (`line_no` is 1-based). Blank and comment-only lines give `None`.
/// Unicode spaces separate words like ASCII ones; columns count characters.
pub fn parse_line(line: &str, line_no: usize) -> Result<Option<Statement>, ParseError> {
    let normalized = normalize_spaces(line);
    let code = strip_comment(&normalized).trim_end();
    let body = code.trim_start();
    if body.is_empty() {
        return Ok(None);
    }
    let indent = code.len() - body.len();
    match statement(body) {
        Ok((_, kind)) => Ok(Some(Statement {
            kind,
            span: Span { line: line_no, col: code[..indent].chars().count() + 1, len: body.chars().count() },
            text: body.to_string(),
        })),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            // `e.at` is a suffix of `body`, which starts `indent` bytes into the line.
            let offset_in_body = body.len() - e.at.len();
            let col = code[..indent + offset_in_body].chars().count() + 1;
            Err(ParseError {
                line: line_no,
                col,
                line_text: line.to_string(),
                expected: e.expected.into_owned(),
                suggestion: e.suggestion,
                kind: ParseErrorKind::Invalid,
            })
        }
        // Only a quoted string asks for more input: the line ended inside it.
        Err(nom::Err::Incomplete(_)) => Err(ParseError {
            line: line_no,
            col: code.chars().count() + 1,
            line_text: line.to_string(),
            expected: CLOSING_QUOTE.into(),
            suggestion: None,
            kind: ParseErrorKind::UnclosedQuote,
        }),
    }
}

/// Parses a whole program (a script or a notebook cell), one statement per line.
pub fn parse_program(source: &str) -> Result<Vec<Statement>, ParseError> {
    let mut statements = Vec::new();
    for (i, line) in source.lines().enumerate() {
        if let Some(st) = parse_line(line, i + 1)? {
            statements.push(st);
        }
    }
    Ok(statements)
}
