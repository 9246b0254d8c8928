//! Replays a `.lab` script: every line is parsed first, then statements run in order and the
//! first error stops the run, naming file:line:col.

use std::path::Path;

use super::terminal::Terminal;
use crate::session::{RunError, Session};

/// Runs the script at `path` (or `source` read from stdin when `path` is `None`).
pub fn run(session: &mut Session, source: &str, path: Option<&Path>, terminal: &mut Terminal) -> Result<(), RunError> {
    session.run_source(source, path, &mut |event| terminal.show(event))
}
