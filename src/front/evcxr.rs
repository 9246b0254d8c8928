//! Rich output in a Rust notebook (the evcxr Jupyter kernel): tables as HTML and images as
//! PNG, through evcxr's `EVCXR_BEGIN_CONTENT mime … EVCXR_END_CONTENT` convention on stdout.
//!
//! In a Rust notebook:
//!
//! ```text
//! :dep mnistlab = { path = "/path/to/mnistlab" }
//! let mut lab = mnistlab::session::Session::new();
//! mnistlab::front::evcxr::display_run(&mut lab, "load mnist\nshow samples 16").unwrap();
//! ```
//!
//! or, event by event: `lab.run_source(code, None, &mut |event| mnistlab::front::evcxr::display(&event))`.

use base64::Engine;

use super::render::{progress_text, table_html};
use crate::session::{Event, RunError, Session};

/// One evcxr content block.
fn content(mime: &str, body: &str) -> String {
    format!("EVCXR_BEGIN_CONTENT {mime}\n{body}\nEVCXR_END_CONTENT\n")
}

/// What evcxr should get on stdout for `event`: a content block for tables (`text/html`) and
/// images (`image/png`, base64), plain lines for text, warnings and finished progress; `None`
/// for progress still running.
pub fn output(event: &Event) -> Option<String> {
    match event {
        Event::Text(text) => Some(format!("{text}\n")),
        Event::Warning(text) => Some(format!("warning: {text}\n")),
        Event::Table(table) => Some(content("text/html", &table_html(table))),
        Event::Image(image) => {
            Some(content("image/png", &base64::engine::general_purpose::STANDARD.encode(&image.png)))
        }
        Event::Progress(p) if p.finished => Some(format!("{}\n", progress_text(p))),
        Event::Progress(_) => None,
    }
}

/// Prints [`output`] to stdout, where evcxr shows it inline.
pub fn display(event: &Event) {
    if let Some(text) = output(event) {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }
}

/// Runs `source` in `session`, showing every event inline in an evcxr notebook.
pub fn display_run(session: &mut Session, source: &str) -> Result<(), RunError> {
    session.run_source(source, None, &mut |event| display(&event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Image, Progress, Table, Task};

    #[test]
    fn table_is_an_html_block() {
        let mut t = Table::new(None, &["class", "n"]);
        t.row(vec!["7".into(), "3".into()]);
        assert_eq!(
            output(&Event::Table(t)).unwrap(),
            "EVCXR_BEGIN_CONTENT text/html\n<table><thead><tr><th>class</th><th>n</th></tr></thead><tbody><tr><td>7</td><td>3</td></tr></tbody></table>\nEVCXR_END_CONTENT\n"
        );
    }

    #[test]
    fn image_is_a_base64_png_block() {
        let image = Image { name: "s".into(), title: "t".into(), png: b"\x89PNG".to_vec(), svg: None };
        assert_eq!(
            output(&Event::Image(image)).unwrap(),
            "EVCXR_BEGIN_CONTENT image/png\niVBORw==\nEVCXR_END_CONTENT\n"
        );
    }

    #[test]
    fn text_and_progress() {
        assert_eq!(output(&Event::Text("hi".into())).unwrap(), "hi\n");
        assert_eq!(output(&Event::Warning("w".into())).unwrap(), "warning: w\n");
        let mut p = Progress {
            task: Task::FitEpoch { run: 1, epoch: 1, epochs: 1 },
            done: 1,
            total: 2,
            message: String::new(),
            finished: false,
        };
        assert_eq!(output(&Event::Progress(p.clone())), None);
        p.finished = true;
        p.done = 2;
        assert_eq!(output(&Event::Progress(p)).unwrap(), format!("epoch 1/1 [{}] 2/2\n", "=".repeat(30)));
    }
}
