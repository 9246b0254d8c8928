//! The nom parser: one statement per line, `#` starts a comment.

use std::borrow::Cow;
use std::fmt;

use nom::bytes::complete::take_while1;
use nom::character::complete::space0;
use nom::combinator::recognize;

use super::ast::*;
use super::combinators::{fail, PErr, Res, CLOSING_QUOTE};
use super::docs;
use super::vocabulary;

pub use super::combinators::closest;

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

/// What an unknown statement's error says after the word: dropped when the vocabulary
/// explains the word instead.
const TRY_HELP: &str = " (try `help`)";

fn statement(input: &str) -> Res<'_, StatementKind> {
    let (rest, word) = recognize(take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'))(input)
        .map_err(|_: nom::Err<PErr>| {
            nom::Err::Failure(PErr { at: input, expected: "a statement".into(), suggestion: None })
        })?;
    let Some(doc) = docs::lookup(word) else {
        return Err(nom::Err::Failure(PErr {
            at: input,
            expected: Cow::Owned(format!("a statement, not `{word}`{TRY_HELP}")),
            suggestion: closest(word, docs::keywords()).map(str::to_string),
        }));
    };
    let (rest, kind) = (doc.parse)(rest)?;
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

/// `line` read as the parser reads it, one character for one so that columns stay the same:
/// outside quotes, every Unicode space (U+3000 from Chinese input methods, no-break spaces, …)
/// made an ASCII space, and every character whose compatibility form (NFKC) is one character
/// made that character (full-width `５` and `ｆｉｔ`, which the same input methods type, are
/// `5` and `fit`).
fn normalize(line: &str) -> Cow<'_, str> {
    use unicode_normalization::UnicodeNormalization;
    if line.is_ascii() {
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
                if in_quotes || c.is_ascii() {
                    c
                } else if c.is_whitespace() && c != '\n' {
                    ' '
                } else {
                    let mut compat = std::iter::once(c).nfkc();
                    match (compat.next(), compat.next()) {
                        (Some(one), None) => one,
                        _ => c,
                    }
                }
            })
            .collect(),
    )
}

/// `line` with its keywords in lowercase (`LOAD MNIST`, `optimizer Adam`, `Fit 3`): outside
/// quotes, the first word and every word that is, in lowercase, a word of the language
/// (a statement's keyword or option, a layer word like `conv32` or `dense128`). Other words
/// (paths) keep their case; a folder named like a keyword is written in quotes.
fn lowercase_keywords(line: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(line.len());
    let mut changed = false;
    let mut in_quotes = false;
    let mut first = true;
    let mut rest = line;
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_whitespace() || in_quotes || c == '"' {
            if c == '"' {
                in_quotes = !in_quotes;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let end = rest.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(rest.len());
        let word = &rest[..end];
        let lower = word.to_ascii_lowercase();
        if lower != word && (first || is_language_word(&lower)) {
            out.push_str(&lower);
            changed = true;
        } else {
            out.push_str(word);
        }
        first = false;
        rest = &rest[end..];
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(line)
    }
}

/// Whether `word` (lowercase) is a word of the language: a keyword, a statement's option, a
/// split name, or a layer word (`conv32`, `conv32k5`, `dense128`).
fn is_language_word(word: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let layer = word.strip_prefix("dense").is_some_and(digits)
        || word.strip_prefix("conv").is_some_and(|s| match s.split_once('k') {
            Some((f, k)) => digits(f) && digits(k),
            None => digits(s),
        });
    layer
        || matches!(word, "valid" | "validation" | "maxpool" | "log" | "h" | "v")
        || crate::model::architecture::spec::PRESETS.contains(&word)
        || docs::statements().any(|d| d.keyword == word || d.words.contains(&word))
}

/// Parses one source line (`line_no` is 1-based). Blank and comment-only lines give `None`.
/// Unicode spaces separate words like ASCII ones, full-width letters and digits read as ASCII
/// and keywords in any case; columns count characters. A line that does not parse is
/// explained from the [`vocabulary`] of Keras and PyTorch words first, and from spelling
/// second.
pub fn parse_line(line: &str, line_no: usize) -> Result<Option<Statement>, ParseError> {
    let normalized = normalize(line);
    let lowered = lowercase_keywords(&normalized);
    let code = strip_comment(&lowered).trim_end();
    let body = code.trim_start();
    if body.is_empty() {
        return Ok(None);
    }
    let indent = code.len() - body.len();
    let column = |offset_in_body: usize| code[..indent + offset_in_body].chars().count() + 1;
    match statement(body) {
        Ok((_, kind)) => Ok(Some(Statement {
            kind,
            span: Span { line: line_no, col: column(0), len: body.chars().count() },
            text: body.to_string(),
        })),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            // `e.at` is a suffix of `body`, which starts `indent` bytes into the line.
            let mut at = body.len() - e.at.len();
            let mut expected = e.expected.into_owned();
            let mut suggestion = e.suggestion;
            let parses = |text: &str| matches!(statement(text), Ok((_, _)));
            // A line longer than anyone types (a paste gone wrong) gets no explanation: reading
            // every word of it against the table would take long for nothing.
            let explain =
                |body: &str| if body.len() <= EXPLAINED_LENGTH { vocabulary::explain(body, at, &parses) } else { None };
            if let Some(hint) = explain(body) {
                // What was typed, in its own case (lowercasing keeps every byte offset).
                let as_typed = strip_comment(&normalized).trim_end().trim_start();
                let typed = as_typed.get(hint.at..hint.end).map_or(hint.typed.as_str(), str::trim);
                let expected_here =
                    if hint.at == 0 && at != 0 { "a statement" } else { expected.trim_end_matches(TRY_HELP) };
                expected = format!("{expected_here}; for `{typed}`, {}", hint.means);
                suggestion = hint.answer;
                at = hint.at;
            } else if let Some(eq) = equals_outside_quotes(body).filter(|_| body.len() <= EXPLAINED_LENGTH) {
                let written = vocabulary::without_equals(body);
                if parses(&written) {
                    let key = body[..eq].trim_end().rsplit(char::is_whitespace).next().unwrap_or("");
                    expected = format!("`{key} VALUE`: mnistlab writes a setting and its value with a space, not `=`");
                    suggestion = Some(written);
                    at = eq;
                }
            } else if word_at(body, at).is_some_and(vocabulary::knows) {
                // The table knows the word for something else: a near spelling would mislead.
                suggestion = None;
            }
            Err(ParseError {
                line: line_no,
                col: column(at),
                line_text: line.to_string(),
                expected,
                suggestion,
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

/// The longest line (in bytes) a failed parse explains from the vocabulary.
const EXPLAINED_LENGTH: usize = 2000;

/// The byte offset of the first `=` outside quotes.
fn equals_outside_quotes(line: &str) -> Option<usize> {
    let mut in_quotes = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            '=' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// The word of `line` at byte `at` (up to a space, `(` or `=`).
fn word_at(line: &str, at: usize) -> Option<&str> {
    let rest = line.get(at..)?;
    let end = rest.find(|c: char| c.is_whitespace() || c == '(' || c == '=').unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
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
