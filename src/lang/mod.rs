//! Syntax only: the AST with source spans, the nom parser, and the statement docs table.

pub mod ast;
pub mod complete;
pub mod docs;
pub mod parser;
pub mod ranges;

pub use ast::*;
pub use parser::{parse_line, parse_program, ParseError};
