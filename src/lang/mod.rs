//! Syntax only: the AST with source spans, the nom parser, and the statement table (each
//! statement's docs, completion words and parse function together).

pub mod ast;
pub mod complete;
pub mod docs;
pub mod parser;
pub mod ranges;
mod statements;

pub use ast::*;
pub use parser::{parse_line, parse_program, ParseError};
