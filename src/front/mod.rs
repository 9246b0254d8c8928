//! Front ends: thin renderers of the session's events (REPL, script runner, terminal,
//! Jupyter kernel, evcxr display).

pub mod evcxr;
pub mod kernel;
pub mod paths;
pub mod render;
pub mod repl;
pub mod script;
pub mod terminal;
