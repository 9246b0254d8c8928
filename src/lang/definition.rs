//! What defines a statement: its keyword, forms, docs, completion words, number ranges and
//! parse function, in one value ([`StatementDoc`]); the table of them is [`super::docs::statements`].

use super::combinators::Parse;
use super::ranges::NumRange;

/// One statement: its documentation and its parser.
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
    /// Parses what follows the keyword.
    pub(crate) parse: Parse,
}
