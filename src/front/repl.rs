//! The interactive REPL: rustyline with history, completion and hints from the docs table.
//! No error ends it; `:save FILE` writes the session's successful statements as a script.

use std::borrow::Cow;
use std::path::PathBuf;

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::{Context, Editor, Helper, Validator};

use super::terminal::Terminal;
use crate::lang::docs;
use crate::session::Session;

/// Words the REPL itself understands, besides statements.
const REPL_COMMANDS: &[&str] = &[":save", ":quit", ":help"];
const SPLIT_WORDS: &[&str] = &["train", "val", "test"];

/// Completion and hints for the REPL.
#[derive(Helper, Validator)]
pub struct LabHelper {
    files: FilenameCompleter,
}

impl LabHelper {
    /// A helper completing keywords, their arguments and file paths.
    pub fn new() -> LabHelper {
        LabHelper { files: FilenameCompleter::new() }
    }
}

impl Default for LabHelper {
    fn default() -> Self {
        LabHelper::new()
    }
}

/// Candidate words for the word being typed, given the words before it.
pub fn complete_words(before: &[&str], word: &str) -> Vec<String> {
    let candidates: Vec<&str> = match before.first() {
        None => docs::keywords().chain(REPL_COMMANDS.iter().copied()).collect(),
        Some(keyword) => match docs::lookup(keyword) {
            Some(doc) => doc.words.iter().chain(SPLIT_WORDS.iter().filter(|_| *keyword == "show")).copied().collect(),
            None => Vec::new(),
        },
    };
    let mut out: Vec<String> = candidates.into_iter().filter(|c| c.starts_with(word)).map(str::to_string).collect();
    out.dedup();
    out
}

impl Completer for LabHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[start..];
        let words: Vec<&str> = before[..start].split_whitespace().collect();
        let mut pairs: Vec<Pair> =
            complete_words(&words, word).into_iter().map(|w| Pair { display: w.clone(), replacement: w }).collect();
        if !words.is_empty() && (pairs.is_empty() || word.contains(['/', '.'])) {
            let (file_start, files) = self.files.complete(line, pos, ctx)?;
            if file_start == start || pairs.is_empty() {
                return Ok((file_start, files));
            }
        }
        pairs.sort_by(|a, b| a.display.cmp(&b.display));
        Ok((start, pairs))
    }
}

impl Hinter for LabHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<String> {
        if pos < line.len() || line.is_empty() {
            return None;
        }
        let keyword = line.split_whitespace().next()?;
        if !line.contains(' ') {
            // Complete a unique keyword prefix.
            let matches: Vec<&str> = docs::keywords().filter(|k| k.starts_with(keyword)).collect();
            return match matches.as_slice() {
                [one] if *one != keyword => Some(one[keyword.len()..].to_string()),
                _ => None,
            };
        }
        let doc = docs::lookup(keyword)?;
        if line.trim_end() == keyword && line.ends_with(' ') {
            let form = doc.synopsis[0];
            return Some(form.strip_prefix(keyword).unwrap_or(form).trim_start().to_string());
        }
        None
    }
}

impl Highlighter for LabHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }
}

fn history_path() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("mnistlab").join("history.txt"))
}

/// Writes the session's successful statements to `path` atomically.
fn save_script(session: &Session, path: &str) -> Result<usize, String> {
    let path = PathBuf::from(path);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| ".".into());
    let mut text = session.history().join("\n");
    text.push('\n');
    let mut tmp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    tmp.persist(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(session.history().len())
}

/// Runs the REPL until `:quit` or end of input.
pub fn run(session: &mut Session, terminal: &mut Terminal) -> rustyline::Result<()> {
    let mut editor: Editor<LabHelper, DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(LabHelper::new()));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!("mnistlab {} — `help` lists statements, `:quit` leaves", env!("CARGO_PKG_VERSION"));
    loop {
        match editor.readline("lab> ") {
            Ok(line) => {
                let trimmed = line.trim();
                if trimmed.is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(trimmed);
                if let Some(command) = trimmed.strip_prefix(':') {
                    let mut parts = command.split_whitespace();
                    match (parts.next(), parts.next()) {
                        (Some("quit" | "q" | "exit"), _) => break,
                        (Some("save"), Some(file)) => match save_script(session, file) {
                            Ok(n) => println!("wrote {n} statements to {file}"),
                            Err(e) => eprintln!("error: {e}"),
                        },
                        (Some("save"), None) => eprintln!("error: `:save FILE` needs a file name"),
                        (Some("help"), _) => {
                            println!(":save FILE  write this session's statements as a script\n:quit       leave")
                        }
                        _ => eprintln!("error: unknown command `{trimmed}` (`:save FILE`, `:quit`, `:help`)"),
                    }
                    continue;
                }
                if let Err(e) = session.run_source(&line, None, &mut |event| terminal.show(event)) {
                    eprintln!("error: {e}");
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(path);
    }
    Ok(())
}
