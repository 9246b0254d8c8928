//! Rich output in a Rust notebook (evcxr_jupyter) and in evcxr_repl.
//!
//! evcxr keeps one content block per MIME type per cell (a later block of the same type replaces
//! an earlier one) and sends them when the cell ends. So a call here gathers every event of the
//! statements it runs into one [`Cell`]: one `text/html` block holding text, tables and images
//! (inline PNG) in the order they came, and one `text/plain` block with the same in text, which
//! evcxr_repl prints (images there as a line naming them). Progress bars go to stderr as they
//! finish, so a long `fit` shows it is alive; they are not repeated in the blocks.
//!
//! In a Rust notebook:
//!
//! ```text
//! :dep mnistlab = { path = "/path/to/mnistlab" }
//! let mut lab = mnistlab::session::Session::new();
//! mnistlab::front::evcxr::display_run(&mut lab, "load mnist\nsummary\nshow samples 16").unwrap();
//! ```
//!
//! Call it once per cell: a second call in the same cell replaces the first one's blocks.

use base64::Engine;

use super::render::{escape, progress_text, table_html, table_text};
use crate::lang::{self, ParseError, ParseErrorKind};
use crate::session::{Event, RunError, Session};

/// The line that ends an evcxr content block; a content line equal to it would end it early.
const END: &str = "EVCXR_END_CONTENT";

/// One call's output, event by event, as HTML and as plain text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    html: String,
    plain: String,
    /// Whether the HTML is inside an open `<pre>` of text lines.
    in_text: bool,
}

impl Cell {
    /// An empty cell.
    pub fn new() -> Cell {
        Cell::default()
    }

    /// Adds `event`; returns the progress line to show at once (on stderr) for finished progress,
    /// which the blocks leave out.
    pub fn push(&mut self, event: &Event) -> Option<String> {
        match event {
            Event::Text(text) => self.text(text, None),
            Event::Warning(text) => self.text(&format!("warning: {text}"), Some("color:#a15c00")),
            Event::Table(table) => {
                self.close_text();
                self.html.push_str(&table_html(table));
                self.plain_line(&table_text(table));
            }
            Event::Image(image) => {
                self.close_text();
                let data = base64::engine::general_purpose::STANDARD.encode(&image.png);
                self.html.push_str(&format!(
                    "<figure style=\"margin:0.5em 0\"><img alt=\"{title}\" src=\"data:image/png;base64,{data}\"/>\
                     <figcaption>{title}</figcaption></figure>",
                    title = escape(&image.title).replace('"', "&quot;")
                ));
                self.plain_line(&format!(
                    "[image: {} ({} bytes of PNG; shown in Jupyter)]",
                    image.title,
                    image.png.len()
                ));
            }
            Event::Progress(p) if p.finished => return Some(progress_text(p)),
            Event::Progress(_) => {}
        }
        None
    }

    /// Adds a failure, in red in the HTML.
    pub fn error(&mut self, error: &RunError) {
        self.text(&format!("error: {error}"), Some("color:#b00020"));
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.html.is_empty() && self.plain.is_empty()
    }

    /// The HTML: text as `<pre>` lines, tables and images between them, in order.
    pub fn html(&self) -> String {
        let mut html = self.html.clone();
        if self.in_text {
            html.push_str("</pre>");
        }
        format!("<div class=\"mnistlab\">{html}</div>")
    }

    /// The plain-text alternative.
    pub fn plain(&self) -> &str {
        self.plain.trim_end_matches('\n')
    }

    /// What evcxr should get on stdout: the `text/html` block, then the `text/plain` block;
    /// empty when nothing was added.
    pub fn blocks(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        format!("{}{}", block("text/html", &self.html()), block("text/plain", self.plain()))
    }

    fn text(&mut self, text: &str, style: Option<&str>) {
        if !self.in_text {
            self.html.push_str("<pre style=\"margin:0.2em 0\">");
            self.in_text = true;
        }
        match style {
            Some(style) => self.html.push_str(&format!("<span style=\"{style}\">{}</span>\n", escape(text))),
            None => {
                self.html.push_str(&escape(text));
                self.html.push('\n');
            }
        }
        self.plain_line(text);
    }

    fn close_text(&mut self) {
        if self.in_text {
            self.html.push_str("</pre>");
            self.in_text = false;
        }
    }

    fn plain_line(&mut self, text: &str) {
        self.plain.push_str(text);
        self.plain.push('\n');
    }
}

/// One evcxr content block. A body line equal to the end marker gets a leading space, so the
/// block cannot end early.
fn block(mime: &str, body: &str) -> String {
    let body: Vec<String> =
        body.lines().map(|line| if line.trim() == END { format!(" {line}") } else { line.to_string() }).collect();
    format!("EVCXR_BEGIN_CONTENT {mime}\n{}\n{END}\n", body.join("\n"))
}

/// Runs `source` in `session` and shows everything it produced as one rich output (see the
/// module's docs). A failure is shown in the output too, after what ran before it, and returned.
pub fn display_run(session: &mut Session, source: &str) -> Result<(), RunError> {
    let (cell, result) = run_cell(session, source);
    print_stdout(&cell.blocks());
    result
}

/// Runs one statement and shows its output as [`display_run`] does; a source holding more or
/// fewer than one statement is refused as a [`RunError::Parse`] (nothing runs).
pub fn display(session: &mut Session, statement: &str) -> Result<(), RunError> {
    let statements = match lang::parse_program(statement) {
        Ok(statements) => statements,
        Err(error) => return fail_parse(error),
    };
    if statements.len() != 1 {
        let (line, line_text) = match statements.get(1) {
            Some(second) => (second.span.line, statement.lines().nth(second.span.line - 1).unwrap_or("").to_string()),
            None => (1, statement.lines().next().unwrap_or("").to_string()),
        };
        let found = if statements.is_empty() { "none" } else { "more" };
        return fail_parse(ParseError {
            line,
            col: 1,
            line_text,
            expected: format!("one statement (found {found}; `display_run` runs several)"),
            suggestion: None,
            kind: ParseErrorKind::Invalid,
        });
    }
    display_run(session, statement)
}

fn fail_parse(error: ParseError) -> Result<(), RunError> {
    let error = RunError::Parse { file: None, error };
    let mut cell = Cell::new();
    cell.error(&error);
    print_stdout(&cell.blocks());
    Err(error)
}

/// Runs `source`, gathering its events into a [`Cell`] (and its failure, if any); finished
/// progress goes to stderr as it comes.
pub fn run_cell(session: &mut Session, source: &str) -> (Cell, Result<(), RunError>) {
    let mut cell = Cell::new();
    let result = session.run_source(source, None, &mut |event| {
        if let Some(line) = cell.push(&event) {
            eprintln!("{line}");
        }
    });
    if let Err(error) = &result {
        cell.error(error);
    }
    (cell, result)
}

fn print_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Image, Progress, Table, Task};

    fn image(title: &str) -> Image {
        Image { name: "s".into(), title: title.into(), png: b"\x89PNG".to_vec(), svg: None }
    }

    #[test]
    fn everything_is_in_one_html_block_in_order() {
        let mut cell = Cell::new();
        let mut t = Table::new(None, &["class", "n"]);
        t.row(vec!["7".into(), "3".into()]);
        cell.push(&Event::Text("a < b".into()));
        cell.push(&Event::Image(image("first")));
        cell.push(&Event::Table(t));
        cell.push(&Event::Text("between".into()));
        cell.push(&Event::Image(image("second")));
        let blocks = cell.blocks();
        assert_eq!(blocks.matches("EVCXR_BEGIN_CONTENT text/html\n").count(), 1);
        assert_eq!(blocks.matches("EVCXR_BEGIN_CONTENT text/plain\n").count(), 1);
        let html = cell.html();
        let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("{needle} missing from {html}"));
        assert!(at("a &lt; b") < at("alt=\"first\""));
        assert!(at("alt=\"first\"") < at("<td>7</td>"));
        assert!(at("<td>7</td>") < at("between"));
        assert!(at("between") < at("alt=\"second\""));
        assert_eq!(html.matches("src=\"data:image/png;base64,iVBORw==\"").count(), 2);
        assert_eq!(html.matches("<pre").count(), html.matches("</pre>").count());
    }

    #[test]
    fn the_plain_alternative_names_each_image_and_holds_the_text() {
        let mut cell = Cell::new();
        cell.push(&Event::Text("hi".into()));
        cell.push(&Event::Warning("w".into()));
        cell.push(&Event::Image(image("samples")));
        assert_eq!(cell.plain(), "hi\nwarning: w\n[image: samples (4 bytes of PNG; shown in Jupyter)]");
    }

    #[test]
    fn finished_progress_goes_out_at_once_not_into_the_blocks() {
        let mut cell = Cell::new();
        let mut p = Progress {
            task: Task::FitEpoch { run: 1, epoch: 1, epochs: 1 },
            done: 1,
            total: 2,
            message: String::new(),
            elapsed: std::time::Duration::from_secs(3),
            images: 0,
            finished: false,
        };
        assert_eq!(cell.push(&Event::Progress(p.clone())), None);
        p.finished = true;
        p.done = 2;
        assert_eq!(cell.push(&Event::Progress(p)).unwrap(), format!("epoch 1/1 [{}] 2/2 - 3s", "=".repeat(30)));
        assert!(cell.is_empty());
        assert_eq!(cell.blocks(), "");
    }

    #[test]
    fn no_content_line_can_end_a_block_early() {
        let mut cell = Cell::new();
        cell.push(&Event::Text(END.into()));
        let blocks = cell.blocks();
        let ends = blocks.lines().filter(|l| *l == END).count();
        assert_eq!(ends, 2, "{blocks}");
    }

    #[test]
    fn a_real_cell_keeps_its_table_and_both_images() {
        let mut lab = Session::new();
        let source =
            format!("load pkl \"{}\"\nshow samples 4\ninfo\nshow samples 9", crate::testdata::mnist_pkl().display());
        let (cell, result) = run_cell(&mut lab, &source);
        result.unwrap();
        let html = cell.html();
        assert_eq!(html.matches("<img ").count(), 2, "{html}");
        assert!(html.contains("<table>") || html.contains("<pre"), "{html}");
        assert_eq!(cell.plain().matches("[image: ").count(), 2);
    }

    #[test]
    fn a_failure_is_shown_after_what_ran() {
        let mut lab = Session::new();
        let (cell, result) = run_cell(&mut lab, "seed 3\nfit 1");
        assert!(result.is_err());
        let plain = cell.plain();
        assert!(plain.contains("error:"), "{plain}");
        assert!(cell.html().contains("color:#b00020"));
    }
}
