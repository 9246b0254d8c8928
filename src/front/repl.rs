//! The interactive REPL: rustyline with history, completion and hints from the docs table.
//! No error ends it; `:save FILE` writes the session's successful statements as a script.
//!
//! Nothing typed is lost. Lines typed while a statement runs, or sent quickly one after
//! another, wait in the terminal and run in order after it: rustyline reads the terminal
//! through a buffer, and without its `buffer-redux` feature that buffer, with every key read
//! past the Enter that ended a line, was dropped when `readline` returned. With the feature the
//! buffer is kept for the next line. A bracketed paste is read key by key, so each of its lines
//! runs as it is read, in order; the first pasted line that fails (or is interrupted) stops the
//! rest of the paste, and each line that did not run is named (pastes stay marked while a
//! statement runs, so a block pasted then is known as one too). Ctrl-C stops a running statement
//! without discarding what was typed ahead (the terminal's `NOFLSH` while the REPL runs). Keys
//! typed while a statement runs are not echoed (the echo would break the progress bar drawn in
//! place); each line typed ahead shows at its prompt when it runs.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::{
    Cmd, ConditionalEventHandler, Context, Editor, Event, EventContext, EventHandler, Helper, KeyCode, KeyEvent,
    Modifiers, RepeatCount, Validator,
};

use super::paths::complete_path;
use super::terminal::{print_error, Terminal};
use crate::lang::{complete, docs};
use crate::session::Session;

/// The REPL's own commands, besides statements (whose words come from [`complete`]).
const REPL_COMMANDS: &[&str] = &[":save", ":quit", ":help"];

/// Completion and hints for the REPL.
#[derive(Helper, Validator, Default)]
pub struct LabHelper;

impl LabHelper {
    /// A helper completing keywords, their arguments and file paths.
    pub fn new() -> LabHelper {
        LabHelper
    }
}

/// The completions of `line` with the cursor at byte `pos`: where the replaced word starts and
/// the candidates (the words that parse there, then paths where a path may stand). A `pos`
/// that is past the end or inside a character completes nothing.
pub fn candidates(line: &str, pos: usize) -> (usize, Vec<String>) {
    let Some(before) = line.get(..pos) else { return (pos.min(line.len()), Vec::new()) };
    let c = complete::complete(before);
    let word = &before[c.start..];
    let mut words = c.words;
    let earlier: Vec<&str> = before[..c.start].split_whitespace().collect();
    if earlier.is_empty() && word.starts_with(':') {
        words.extend(REPL_COMMANDS.iter().filter(|w| w.starts_with(word)).map(|w| w.to_string()));
    }
    if c.paths || earlier == [":save"] {
        words.extend(complete_path(word));
    }
    words.sort();
    words.dedup();
    (c.start, words)
}

/// The hint shown after the cursor at byte `pos`: the rest of the only keyword that completes
/// the word typed, or the first form of the statement after `KEYWORD `.
pub fn hint(line: &str, pos: usize) -> Option<String> {
    if pos != line.len() || line.trim().is_empty() {
        return None;
    }
    let body = line.trim_start();
    let Some(space) = body.find(char::is_whitespace) else {
        // Complete a unique keyword prefix.
        let matches = complete::complete(body).words;
        return match matches.as_slice() {
            [one] => one.strip_prefix(body).filter(|rest| !rest.is_empty()).map(str::to_string),
            _ => None,
        };
    };
    let (keyword, rest) = body.split_at(space);
    let doc = docs::lookup(keyword)?;
    if !rest.trim().is_empty() {
        return None;
    }
    let form = doc.synopsis.first()?;
    Some(form.strip_prefix(keyword).unwrap_or(form).trim_start().to_string())
}

/// Runs `f`, or gives `fallback` if it panics: a bug in completion must not end the REPL.
fn guarded<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    crate::guard::catch(f).unwrap_or(fallback)
}

impl Completer for LabHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = guarded((pos, Vec::new()), || candidates(line, pos));
        Ok((start, words.into_iter().map(|w| Pair { display: w.clone(), replacement: w }).collect()))
    }
}

impl Hinter for LabHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<String> {
        guarded(None, || hint(line, pos))
    }
}

impl Highlighter for LabHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }
}

/// Marks the start (`inside: true`) or the end of a bracketed paste in the shared flag, and
/// lets the pasted keys through as typed keys: each pasted Enter then ends a line.
struct PasteMarker {
    pasting: Arc<AtomicBool>,
    inside: bool,
}

impl ConditionalEventHandler for PasteMarker {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, _: &EventContext) -> Option<Cmd> {
        self.pasting.store(self.inside, Ordering::SeqCst);
        Some(Cmd::Noop)
    }
}

/// A Tab inside a paste is text, not a request to complete.
struct PastedTab {
    pasting: Arc<AtomicBool>,
}

impl ConditionalEventHandler for PastedTab {
    fn handle(&self, _: &Event, n: RepeatCount, _: bool, _: &EventContext) -> Option<Cmd> {
        self.pasting.load(Ordering::SeqCst).then_some(Cmd::SelfInsert(n, '\t'))
    }
}

/// The terminal's settings while statements run (rustyline restores them after each line it
/// reads): `NOFLSH`, so that Ctrl-C (which stops a running statement) does not also discard the
/// lines typed ahead, and no echo, so that keys typed ahead do not break the progress bar that
/// is redrawn in place (each line typed ahead is shown at its prompt when it runs). Restores
/// the terminal's settings when dropped. Does nothing where standard input is not a terminal.
struct KeepTypeAhead {
    saved: Option<libc::termios>,
}

impl KeepTypeAhead {
    fn new() -> KeepTypeAhead {
        // SAFETY: tcgetattr and tcsetattr only read and write the termios value passed to them.
        unsafe {
            let mut termios: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut termios) != 0 {
                return KeepTypeAhead { saved: None };
            }
            let saved = termios;
            termios.c_lflag |= libc::NOFLSH;
            termios.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, &termios) != 0 {
                return KeepTypeAhead { saved: None };
            }
            KeepTypeAhead { saved: Some(saved) }
        }
    }
}

impl Drop for KeepTypeAhead {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: as in `new`; `saved` is the value tcgetattr filled.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, saved);
            }
        }
    }
}

/// Asks the terminal to mark pastes (`on`) or not, where standard output is a terminal.
fn bracketed_paste(on: bool) {
    let mut stdout = std::io::stdout();
    if stdout.is_terminal() {
        let _ = stdout.write_all(if on { b"\x1b[?2004h" } else { b"\x1b[?2004l" });
        let _ = stdout.flush();
    }
}

fn history_path() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("mnistlab").join("history.txt"))
}

/// Writes the session's successful statements to `path` through the write path.
fn save_script(session: &Session, path: &str) -> Result<usize, crate::write::WriteError> {
    let mut text = session.statements().join("\n");
    text.push('\n');
    crate::write::write_file(Path::new(path), text.as_bytes(), crate::write::Place::OutsideCache)?;
    Ok(session.statements().len())
}

/// Runs the REPL until `:quit` or end of input.
pub fn run(session: &mut Session, terminal: &mut Terminal) -> rustyline::Result<()> {
    let mut editor: Editor<LabHelper, DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(LabHelper::new()));
    let pasting = Arc::new(AtomicBool::new(false));
    for (key, inside) in [(KeyCode::BracketedPasteStart, true), (KeyCode::BracketedPasteEnd, false)] {
        let marker = PasteMarker { pasting: Arc::clone(&pasting), inside };
        editor.bind_sequence(KeyEvent(key, Modifiers::NONE), EventHandler::Conditional(Box::new(marker)));
    }
    let tab = PastedTab { pasting: Arc::clone(&pasting) };
    editor.bind_sequence(KeyEvent(KeyCode::Tab, Modifiers::NONE), EventHandler::Conditional(Box::new(tab)));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    let _keep = KeepTypeAhead::new();
    let interrupted = session.interrupt_flag();
    // The pasted line that failed, while the rest of its paste is being skipped.
    let mut failed_paste: Option<String> = None;
    println!("mnistlab {} — `help` lists statements, `:quit` leaves", env!("CARGO_PKG_VERSION"));
    loop {
        match editor.readline("lab> ") {
            Ok(line) => {
                // Still inside a paste: the Enter that ended this line came before the paste's end.
                let pasted = pasting.load(Ordering::SeqCst);
                if !pasted {
                    failed_paste = None;
                }
                let trimmed = line.trim();
                if trimmed.is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(trimmed);
                if let Some(failed) = &failed_paste {
                    eprintln!("not run: `{trimmed}` (the paste stopped at `{failed}`)");
                    continue;
                }
                if let Some(command) = trimmed.strip_prefix(':') {
                    let mut parts = command.split_whitespace();
                    match (parts.next(), parts.next()) {
                        (Some("quit" | "q" | "exit"), _) => break,
                        (Some("save"), Some(file)) => match save_script(session, file) {
                            Ok(n) => println!("wrote {n} statements to {file}"),
                            Err(e) => print_error(&e),
                        },
                        (Some("save"), None) => eprintln!("error: `:save FILE` needs a file name"),
                        (Some("help"), _) => {
                            println!(":save FILE  write this session's statements as a script\n:quit       leave")
                        }
                        _ => eprintln!("error: unknown command `{trimmed}` (`:save FILE`, `:quit`, `:help`)"),
                    }
                    continue;
                }
                // A paste that comes while the statement runs must still be known as one: the
                // terminal keeps marking pastes (rustyline turns the marks off after each line).
                bracketed_paste(true);
                let ran = match session.run_source(&line, None, &mut |event| terminal.show(event)) {
                    Ok(()) => !interrupted.load(Ordering::SeqCst),
                    Err(e) => {
                        print_error(&e);
                        false
                    }
                };
                if !ran && pasted {
                    failed_paste = Some(trimmed.to_string());
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    bracketed_paste(false);
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_keywords_arguments_and_commands() {
        assert_eq!(candidates("lo", 2), (0, vec!["load".to_string(), "log".to_string(), "loss".to_string()]));
        assert_eq!(candidates("load mnist ", 11), (11, vec!["from".to_string()]));
        assert_eq!(candidates(":s", 2), (0, vec![":save".to_string()]));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lesson.lab"), "").unwrap();
        let line = format!(":save {}/le", dir.path().display());
        assert_eq!(candidates(&line, line.len()), (6, vec![format!("{}/lesson.lab", dir.path().display())]));
        // Completion stops at the cursor; text after it does not count.
        assert_eq!(candidates("lo mnist", 2).1, vec!["load", "log", "loss"]);
    }

    #[test]
    fn save_refuses_a_fifo_and_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("lesson.lab");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let session = Session::new();
        let e = save_script(&session, fifo.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&std::fs::symlink_metadata(&fifo).unwrap().file_type()));
        let real = dir.path().join("real.lab");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.lab");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        save_script(&session, link.to_str().unwrap()).unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "\n");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }

    #[test]
    fn any_text_and_cursor_is_safe() {
        for line in ["load\u{3000}mni", "\u{3000}lo", "loa\u{301}d mn", "\u{2003}\u{a0} \t", "print \"é", "é"] {
            for pos in 0..=line.len() + 2 {
                let (start, words) = candidates(line, pos);
                assert!(start <= pos.min(line.len()), "{line:?} {pos}");
                if line.is_char_boundary(pos) {
                    assert!(line.is_char_boundary(start));
                } else {
                    assert!(words.is_empty());
                }
                let _ = hint(line, pos);
            }
        }
        // (A name no file in the working directory starts with: paths are offered there too.)
        let line = "load\u{3000}fashion-mn";
        assert_eq!(candidates(line, line.len()), (7, vec!["fashion-mnist".to_string()]));
        assert_eq!(candidates("\u{3000}lo", "\u{3000}lo".len()).1, vec!["load", "log", "loss"]);
    }

    #[test]
    fn keyword_hints_follow_completion() {
        for keyword in docs::keywords() {
            for end in 1..keyword.len() {
                let typed = &keyword[..end];
                let expected = match candidates(typed, end).1.as_slice() {
                    [one] if one != typed => one.strip_prefix(typed).map(str::to_string),
                    _ => None,
                };
                assert_eq!(hint(typed, end), expected, "{typed}");
            }
        }
    }

    #[test]
    fn hints() {
        assert_eq!(hint("standa", 6).as_deref(), Some("rdize"));
        assert_eq!(hint("lo", 2), None, "load and loss");
        assert_eq!(hint("split ", 6).as_deref(), Some("TRAIN/VAL/TEST [seed S]"));
        assert_eq!(hint("split 7", 7), None);
        assert_eq!(hint("split", 3), None, "the cursor is not at the end");
        assert_eq!(hint("\u{3000}info", "\u{3000}info".len()), None);
        assert_eq!(hint("\u{3000}standa", "\u{3000}standa".len()).as_deref(), Some("rdize"));
        assert_eq!(hint("load\u{3000}", "load\u{3000}".len()).as_deref(), Some("mnist|fashion-mnist [from PATH]"));
        assert_eq!(hint("load\u{3000}m", "load\u{3000}m".len()), None);
    }
}
