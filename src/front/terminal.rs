//! Renders session events on a terminal: text to stdout, tables aligned, images written as
//! files under an output folder, progress as a bar (or plain lines when not a terminal).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use super::render::{progress_stats, table_text};
use crate::session::{Event, Image, Task};

/// Writes events to the terminal; images go to `out_dir`.
pub struct Terminal {
    out_dir: PathBuf,
    images_written: usize,
    /// The bar of the task in progress.
    bar: Option<(Task, ProgressBar)>,
    interactive: bool,
}

impl Terminal {
    /// A terminal renderer writing images under `out_dir`.
    pub fn new(out_dir: PathBuf) -> Terminal {
        Terminal { out_dir, images_written: 0, bar: None, interactive: std::io::stderr().is_terminal() }
    }

    /// Shows one event.
    pub fn show(&mut self, event: Event) {
        match event {
            Event::Text(text) => self.println(&text),
            Event::Warning(text) => self.println(&format!("warning: {text}")),
            Event::Table(table) => self.println(&table_text(&table)),
            Event::Image(image) => match self.write_image(&image) {
                Ok(path) => self.println(&format!("{}: {}", image.title, path.display())),
                Err(e) => eprintln!("error: cannot write image {}: {e}", image.name),
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

    fn println(&mut self, text: &str) {
        self.finish_bar();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    fn write_image(&mut self, image: &Image) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.out_dir)?;
        self.images_written += 1;
        let stem = format!("{}-{}", image.name, self.images_written);
        let path = self.out_dir.join(format!("{stem}.png"));
        std::fs::write(&path, &image.png)?;
        if let Some(svg) = &image.svg {
            std::fs::write(self.out_dir.join(format!("{stem}.svg")), svg)?;
        }
        Ok(path)
    }
}
