//! The one table of statements: each statement's keyword, forms, docs, completion words,
//! number ranges and parse function (defined together in `lang/statements/`). It drives
//! the parser, and feeds `help`, completion and hints, the kernel's inspect, and the README's
//! statement reference.

pub use super::definition::StatementDoc;
use super::statements::{data, general, training, tuning};

/// The statement groups, in the order `help` lists them; each group's file defines its
/// statements and their list. The parser knows a statement only through these lists, so none
/// can exist without its docs and completion words.
const GROUPS: &[&[StatementDoc]] = &[data::STATEMENTS, general::STATEMENTS, training::STATEMENTS, tuning::STATEMENTS];

/// Every statement of the language, in the order `help` lists them.
pub fn statements() -> impl Iterator<Item = &'static StatementDoc> {
    GROUPS.iter().flat_map(|group| group.iter())
}

/// The documentation of `keyword`, if it is a statement.
pub fn lookup(keyword: &str) -> Option<&'static StatementDoc> {
    statements().find(|doc| doc.keyword == keyword)
}

/// Every statement keyword.
pub fn keywords() -> impl Iterator<Item = &'static str> {
    statements().map(|doc| doc.keyword)
}

/// The statement reference as Markdown, as it stands in the README.
pub fn markdown_reference() -> String {
    let mut out = String::from("| statement | what it does |\n|---|---|\n");
    for doc in statements() {
        let forms: Vec<String> = doc.synopsis.iter().map(|s| format!("`{}`", s.replace('|', "\\|"))).collect();
        out.push_str(&format!("| {} | {}{} |\n", forms.join("<br>"), doc.summary, numbers_sentence(doc)));
    }
    out
}

/// The long help text of one statement.
pub fn help_text(doc: &StatementDoc) -> String {
    let mut out = String::new();
    for form in doc.synopsis {
        out.push_str(form);
        out.push('\n');
    }
    out.push_str(&format!("  {}{}\n  example: {}", doc.summary, numbers_sentence(doc), doc.example));
    out
}

/// ` Ranges: N 1 to 65536 (a batch size); …` for a statement's numbers, or nothing.
pub fn numbers_sentence(doc: &StatementDoc) -> String {
    if doc.numbers.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = doc.numbers.iter().map(|r| format!("{} {} ({})", r.name, r.bounds(), r.what)).collect();
    format!(" Ranges: {}.", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::parse_line;

    #[test]
    fn every_statement_is_defined_once_and_parses_its_example() {
        let all: Vec<&StatementDoc> = statements().collect();
        for (i, doc) in all.iter().enumerate() {
            assert!(all[..i].iter().all(|d| d.keyword != doc.keyword), "`{}` is defined twice", doc.keyword);
            let parsed = parse_line(doc.example, 1).unwrap_or_else(|e| panic!("{}: {e}", doc.example));
            assert!(parsed.is_some(), "{}", doc.example);
            assert_eq!(doc.example.split_whitespace().next(), Some(doc.keyword), "the example of `{}`", doc.keyword);
            assert!(!doc.synopsis.is_empty() && !doc.summary.is_empty(), "`{}` is documented", doc.keyword);
            assert!(doc.synopsis.iter().all(|s| s.starts_with(doc.keyword)), "the forms of `{}`", doc.keyword);
        }
    }

    #[test]
    fn a_keyword_outside_the_table_is_no_statement() {
        let error = parse_line("train 3", 1).unwrap_err();
        assert!(error.expected.contains("a statement, not `train`"), "{error}");
        assert_eq!(lookup("train").map(|d| d.keyword), None);
    }
}
