//! The nom parser: one statement per line, `#` starts a comment.

use std::borrow::Cow;
use std::fmt;

use nom::bytes::complete::take_while1;
use nom::character::complete::space0;
use nom::combinator::recognize;

use super::ast::*;
use super::combinators::{fail, PErr, Res, CLOSING_QUOTE};
use super::docs;

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

fn statement(input: &str) -> Res<'_, StatementKind> {
    let (rest, word) = recognize(take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'))(input)
        .map_err(|_: nom::Err<PErr>| {
            nom::Err::Failure(PErr { at: input, expected: "a statement".into(), suggestion: None })
        })?;
    let Some(doc) = docs::lookup(word) else {
        return Err(nom::Err::Failure(PErr {
            at: input,
            expected: Cow::Owned(format!("a statement, not `{word}` (try `help`)")),
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
