//! Helpers shared by the session-level integration tests.
#![allow(dead_code)]

use mnistlab::session::{Event, Session, Table};

/// Runs `source` in `session`, returning every event; panics with the error otherwise.
pub fn run(session: &mut Session, source: &str) -> Vec<Event> {
    let mut events = Vec::new();
    if let Err(e) = session.run_source(source, None, &mut |e| events.push(e)) {
        panic!("{e}");
    }
    events
}

/// The error `source` stops with.
pub fn error(session: &mut Session, source: &str) -> String {
    session.run_source(source, None, &mut |_| {}).unwrap_err().to_string()
}

/// The tables among `events`.
pub fn tables(events: &[Event]) -> Vec<Table> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Table(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// The text and warning lines among `events`.
pub fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Text(t) | Event::Warning(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}
