//! The small parsers every statement is built from: words, keywords, numbers in their
//! ranges, paths, quoted strings; and the parser's own error type.

use std::borrow::Cow;
use std::path::PathBuf;

use nom::branch::alt;
use nom::bytes::complete::{escaped_transform, is_not, tag, take_while1};
use nom::character::complete::{char, digit1, space1};
use nom::combinator::{map, map_res, opt, recognize, value};
use nom::sequence::{delimited, preceded, tuple};
use nom::IResult;

use super::ast::StatementKind;
use super::ranges::{self, NumRange};
use crate::data::SplitKind;

/// The parser's internal error: where, and what was expected there.
#[derive(Debug)]
pub(crate) struct PErr<'a> {
    /// The rest of the line where the error stands.
    pub(crate) at: &'a str,
    /// What was expected there.
    pub(crate) expected: Cow<'static, str>,
    /// A close keyword, when the word there looks misspelt.
    pub(crate) suggestion: Option<String>,
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

/// What every parser of this module returns.
pub(crate) type Res<'a, T> = IResult<&'a str, T, PErr<'a>>;

/// A statement's parser: it reads what follows the keyword.
pub(crate) type Parse = for<'a> fn(&'a str) -> Res<'a, StatementKind>;

pub(crate) fn fail<'a, T>(at: &'a str, expected: impl Into<Cow<'static, str>>) -> Res<'a, T> {
    Err(nom::Err::Failure(PErr { at, expected: expected.into(), suggestion: None }))
}

/// Runs `parser`; turns a recoverable error into a failure that says `what` was expected.
pub(crate) fn expect<'a, T>(
    what: &'static str,
    parser: impl FnMut(&'a str) -> Res<'a, T>,
) -> impl FnMut(&'a str) -> Res<'a, T> {
    expect_with(move || Cow::Borrowed(what), parser)
}

/// Like [`expect`], with what was expected made only when a failure needs it.
pub(crate) fn expect_with<'a, T>(
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
pub(crate) fn token(input: &str) -> Res<'_, &str> {
    take_while1(|c: char| !c.is_whitespace())(input)
}

/// One of `options`, failing with a list of them (and a suggestion) otherwise.
pub(crate) fn keyword<'a>(options: &'static [&'static str]) -> impl FnMut(&'a str) -> Res<'a, &'static str> {
    one_of(options, |o| o)
}

/// One of `options`, read by its `name`, failing with a list of the names (and a suggestion)
/// otherwise: a statement takes an operation layer's values by their own names.
pub(crate) fn one_of<'a, T: Copy + 'static>(
    options: &'static [T],
    name: fn(T) -> &'static str,
) -> impl FnMut(&'a str) -> Res<'a, T> {
    move |input: &'a str| {
        let names = || options.iter().map(|&o| name(o));
        let list = names().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let expected = if options.len() == 1 { list } else { format!("one of {list}") };
        let Ok((rest, word)) = token(input) else {
            return fail(input, expected);
        };
        match options.iter().find(|&&o| name(o) == word) {
            Some(&o) => Ok((rest, o)),
            None => Err(nom::Err::Failure(PErr {
                at: input,
                expected: expected.into(),
                suggestion: closest(word, names()).map(str::to_string),
            })),
        }
    }
}

/// A whole number in `range`: a number outside it (or too long to hold) fails with the caret
/// under it; no digits at all is a recoverable error.
pub(crate) fn whole_in<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, u64> {
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
pub(crate) fn count_in<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, usize> {
    map(whole_in(range), |v| usize::try_from(v).unwrap_or(usize::MAX))
}

/// A decimal number in `range` (finite, within its bounds).
pub(crate) fn real_in<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, f64> {
    move |input: &'a str| {
        let (rest, x) = number(input)?;
        if !range.contains(x) {
            return fail(input, range.to_string());
        }
        Ok((rest, x))
    }
}

/// ` NUMBER` after a space, a whole number in `range`; missing, it says what was expected.
pub(crate) fn whole_arg<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, u64> {
    preceded(expect_owned(range, space1), expect_owned(range, whole_in(range)))
}

/// ` NUMBER` after a space, as a `usize`.
pub(crate) fn count_arg<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, usize> {
    preceded(expect_owned(range, space1), expect_owned(range, count_in(range)))
}

/// ` NUMBER` after a space, a decimal number in `range`.
pub(crate) fn real_arg<'a>(range: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, f64> {
    preceded(expect_owned(range, space1), expect_owned(range, real_in(range)))
}

/// Like [`expect`], with the range's own description as what was expected.
pub(crate) fn expect_owned<'a, T>(
    range: &'static NumRange,
    parser: impl FnMut(&'a str) -> Res<'a, T>,
) -> impl FnMut(&'a str) -> Res<'a, T> {
    expect_with(move || Cow::Owned(range.to_string()), parser)
}

/// A `"string"` with the escapes `\\`, `\"` and `\n`. A line that ends inside the string (no
/// `"` is left to close it) is not wrong but unfinished: that failure is `Incomplete`, which
/// the parser reports as an unclosed quote.
pub(crate) fn quoted(input: &str) -> Res<'_, String> {
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
pub(crate) const CLOSING_QUOTE: &str = "a closing `\"`";

/// A path: a quoted string, or a run of non-space characters.
pub(crate) fn path(input: &str) -> Res<'_, PathBuf> {
    alt((map(quoted, PathBuf::from), map(token, PathBuf::from)))(input)
}

pub(crate) fn arg<'a, T>(
    what: &'static str,
    parser: impl FnMut(&'a str) -> Res<'a, T>,
) -> impl FnMut(&'a str) -> Res<'a, T> {
    preceded(expect(what, space1), expect(what, parser))
}

/// `seed S` as an optional trailing clause.
pub(crate) fn seed_clause(input: &str) -> Res<'_, Option<u64>> {
    opt(preceded(tuple((space1, tag("seed"))), whole_arg(&ranges::SEED)))(input)
}

/// A quoted string or a bare word, as an owned string.
pub(crate) fn word_or_quoted(input: &str) -> Res<'_, String> {
    alt((quoted, map(token, str::to_string)))(input)
}

/// A split name: `train`, `val` (also `valid`, `validation`) or `test`.
pub(crate) fn split_name(input: &str) -> Res<'_, SplitKind> {
    let (rest, word) = take_while1(|c: char| c.is_ascii_alphabetic())(input)?;
    let kind = match word {
        "train" => Some(SplitKind::Train),
        "val" | "valid" | "validation" => Some(SplitKind::Val),
        "test" => Some(SplitKind::Test),
        _ => None,
    };
    match kind {
        Some(kind) => Ok((rest, kind)),
        None => Err(nom::Err::Error(PErr { at: input, expected: "a split name".into(), suggestion: None })),
    }
}

/// A decimal number: `-0.5`, `10`, `1e-3`, `.25`.
pub(crate) fn number(input: &str) -> Res<'_, f64> {
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
pub(crate) fn range<'a>(bounds: &'static NumRange) -> impl FnMut(&'a str) -> Res<'a, (f64, f64)> {
    move |input: &'a str| {
        let (rest, (a, _, b)) = tuple((real_in(bounds), tag(".."), real_in(bounds)))(input)?;
        if b < a {
            return fail(input, "a range whose end is not below its start");
        }
        Ok((rest, (a, b)))
    }
}
