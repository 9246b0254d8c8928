//! The syntax layer: the AST with source spans, the nom parser, and the statement table (each
//! statement's docs, completion words and parse function together). The AST holds the
//! operation layers' own plain values (`model::Layer`, `data::SplitKind`, …), so a parsed
//! statement is already what the operation takes; nothing here runs an operation.

pub mod ast;
mod combinators;
pub mod complete;
mod definition;
pub mod docs;
pub mod parser;
pub mod ranges;
mod statements;
pub mod vocabulary;

pub use ast::*;
pub use parser::{parse_line, parse_program, ParseError, ParseErrorKind};
pub(crate) use statements::training::model_statement;
