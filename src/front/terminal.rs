//! Renders session events on a terminal: text to stdout, tables aligned, images written as
//! files under an output folder, progress as a bar (or plain lines when not a terminal).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::render::{progress_stats, table_text, wrap_long_lines};
use crate::session::{Event, Image, Task};
use crate::write::{Place, WriteError};

/// Writes events to the terminal; images go to `out_dir`.
pub struct Terminal {
    out_dir: PathBuf,
    /// Whether an image could not be written (a script then exits with a failure).
    write_failed: bool,
    /// The bar of the task in progress.
    bar: Option<(Task, ProgressBar)>,
    interactive: bool,
}

impl Terminal {
    /// A terminal renderer writing images under `out_dir`.
    pub fn new(out_dir: PathBuf) -> Terminal {
        Terminal { out_dir, write_failed: false, bar: None, interactive: std::io::stderr().is_terminal() }
    }

    /// Shows one event.
    pub fn show(&mut self, event: Event) {
        match event {
            Event::Text(text) => self.println_wrapped(&text),
            Event::Warning(text) => self.println_wrapped(&format!("warning: {text}")),
            Event::Table(table) => self.println(&table_text(&table)),
            Event::Image(image) => match self.write_image(&image) {
                Ok(path) => self.println(&format!("{}: {}", image.title, path.display())),
                Err(e) => {
                    self.finish_bar();
                    self.write_failed = true;
                    eprintln!("error: cannot write image {}: {e}", image.name);
                }
            },
            Event::Progress(p) => {
                if !self.interactive {
                    // Off a terminal a bar is noise; the statement prints its own summary lines.
                    return;
                }
                let same = self.bar.as_ref().is_some_and(|(task, _)| *task == p.task);
                if !same {
                    self.finish_bar();
                    let bar = ProgressBar::new(p.total);
                    bar.set_style(
                        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} - {msg}")
                            .expect("valid template")
                            .progress_chars("=> "),
                    );
                    self.bar = Some((p.task, bar));
                }
                let Some((_, bar)) = self.bar.as_ref() else { return };
                bar.set_prefix(p.label());
                bar.set_length(p.total);
                bar.set_position(p.done);
                bar.set_message(progress_stats(&p));
                if p.finished {
                    // Done: the bar gives way to the line the statement prints next (the epoch's).
                    if let Some((_, bar)) = self.bar.take() {
                        bar.finish_and_clear();
                    }
                }
            }
        }
    }

    /// Leaves an unfinished bar on screen as it stands (an interrupt stops a task between two
    /// updates: the bar keeps the true count, not a full one), so that text prints below it.
    fn finish_bar(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.abandon();
        }
    }

    /// Prints `text`, its long lines wrapped at words to the terminal's width when stdout is a
    /// terminal (piped output stays one line per line).
    fn println_wrapped(&mut self, text: &str) {
        match terminal_width(std::io::stdout().is_terminal()) {
            Some(width) => self.println(&wrap_long_lines(text, width)),
            None => self.println(text),
        }
    }

    fn println(&mut self, text: &str) {
        self.finish_bar();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    /// Whether an image could not be written since this terminal was made.
    pub fn write_failed(&self) -> bool {
        self.write_failed
    }

    /// Writes `image` as `NAME-N.png` (and `.svg`) under the output folder, N one more than any
    /// such file there already, so no earlier session's picture is overwritten.
    fn write_image(&mut self, image: &Image) -> Result<PathBuf, WriteError> {
        let dir = crate::write::create_folder(&self.out_dir, Place::OutsideCache)?;
        let stem = format!("{}-{}", image.name, next_number(&dir, &image.name));
        let path = self.out_dir.join(format!("{stem}.png"));
        let mut files = vec![(path.clone(), image.png.as_slice())];
        if let Some(svg) = &image.svg {
            files.push((self.out_dir.join(format!("{stem}.svg")), svg.as_bytes()));
        }
        crate::write::write_files(&files, Place::OutsideCache)?;
        Ok(path)
    }
}

/// The terminal's width in columns when `interactive` and it is known: what text is wrapped to
/// (here, and `help` through [`crate::session::Session::set_text_width`]).
pub fn terminal_width(interactive: bool) -> Option<usize> {
    interactive.then(terminal_size::terminal_size).flatten().map(|(terminal_size::Width(w), _)| usize::from(w))
}

/// Prints `error: MESSAGE` on stderr, its long lines wrapped at words to the terminal's width
/// when stderr is a terminal.
pub fn print_error(message: &dyn std::fmt::Display) {
    let text = format!("error: {message}");
    match terminal_width(std::io::stderr().is_terminal()) {
        Some(width) => eprintln!("{}", wrap_long_lines(&text, width)),
        None => eprintln!("{text}"),
    }
}

/// One more than the largest N of any `NAME-N.*` in `dir` (1 when there is none).
fn next_number(dir: &Path, name: &str) -> usize {
    let prefix = format!("{name}-");
    let largest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let rest = file.strip_prefix(&prefix)?;
            rest.split('.').next()?.parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0);
    largest + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_never_overwrite_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_number(dir.path(), "history"), 1);
        std::fs::write(dir.path().join("history-3.png"), b"").unwrap();
        std::fs::write(dir.path().join("history-12.svg"), b"").unwrap();
        std::fs::write(dir.path().join("history-x.png"), b"").unwrap();
        std::fs::write(dir.path().join("samples-40.png"), b"").unwrap();
        assert_eq!(next_number(dir.path(), "history"), 13);
        assert_eq!(next_number(dir.path(), "samples"), 41);
    }
}
