//! The statements about the session itself: seed, help, run, print. Each one's definition
//! stands above its parser.

use nom::character::complete::{space0, space1};
use nom::combinator::{map, opt};
use nom::sequence::preceded;

use crate::lang::ast::*;
use crate::lang::combinators::*;
use crate::lang::definition::StatementDoc;
use crate::lang::ranges::{self};

/// The statements of this group, in the order `help` lists them.
pub(crate) const STATEMENTS: &[StatementDoc] = &[SEED, HELP, RUN, PRINT];

/// The `seed` statement.
const SEED: StatementDoc = StatementDoc {
    keyword: "seed",
    synopsis: &["seed S"],
    summary: "Set the session's random seed, used by every later statement that takes no seed of its own.",
    words: &[],
    numbers: &[&ranges::SEED],
    example: "seed 42",
    parse: seed,
};

fn seed(input: &str) -> Res<'_, StatementKind> {
    map(whole_arg(&ranges::SEED), StatementKind::Seed)(input)
}

/// The `help` statement.
const HELP: StatementDoc = StatementDoc {
    keyword: "help",
    synopsis: &["help [STATEMENT|WORD]"],
    summary: "List the statements by lesson, one line each; or show one statement's forms, summary and example, or what a layer word (`dense`), a setting word (`adam`) or a Keras/PyTorch word (`epochs`) means and which statement takes it. Wrapped to the terminal's width (80 columns when it is unknown).",
    words: &[],
    numbers: &[],
    example: "help split",
    parse: help,
};

fn help(input: &str) -> Res<'_, StatementKind> {
    map(opt(preceded(space1, token)), |w: Option<&str>| StatementKind::Help(w.map(str::to_string)))(input)
}

/// The `run` statement.
const RUN: StatementDoc = StatementDoc {
    keyword: "run",
    synopsis: &["run FILE"],
    summary: "Run the statements of a .lab script in this session; stops at the first error.",
    words: &[],
    numbers: &[],
    example: "run examples/prepare.lab",
    parse: run,
};

fn run(input: &str) -> Res<'_, StatementKind> {
    map(arg("a script file", path), StatementKind::Run)(input)
}

/// The `print` statement.
const PRINT: StatementDoc = StatementDoc {
    keyword: "print",
    synopsis: &["print \"TEXT\""],
    summary: "Write the text to the output.",
    words: &[],
    numbers: &[],
    example: "print \"hello, mnist\"",
    parse: print,
};

fn print(input: &str) -> Res<'_, StatementKind> {
    let (rest, _) = space0(input)?;
    if rest.starts_with('(') {
        // Python's `print(...)`: nothing of it would print what was meant.
        return fail(rest, "`print \"TEXT\"` (a statement, not a call)");
    }
    if rest.starts_with('"') {
        let (rest, text) = quoted(rest)?;
        return Ok((rest, StatementKind::Print(text)));
    }
    Ok(("", StatementKind::Print(rest.trim_end().to_string())))
}
