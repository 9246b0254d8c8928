//! Front ends: thin renderers of the session's events (REPL, script runner, terminal).

pub mod render;
pub mod repl;
pub mod script;
pub mod terminal;
