//! Syntax only: the AST with source spans, the nom parser, and the statement table (each
//! statement's docs, completion words and parse function together).

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
