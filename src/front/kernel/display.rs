//! Session events as IOPub message contents: text as streams, tables and images as
//! `display_data`, and the progress of one `fit` as one live display that is updated in place.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::front::render::{progress_html, progress_text, table_html, table_text};
use crate::session::{Event, Progress, Task};

/// What one live display shows: the operation (a `fit` or a `tune` trial, by its run; a
/// `find lr`) and its step (the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Fit { run: u64 },
    FindLr,
}

/// The operation `task` belongs to, and its step in it.
fn operation(task: &Task) -> (Operation, u64) {
    match *task {
        Task::FitEpoch { run, epoch, .. } | Task::TrialEpoch { run, epoch, .. } => (Operation::Fit { run }, epoch),
        Task::FindLr => (Operation::FindLr, 0),
    }
}

/// The live progress display of the operation running now.
struct LiveDisplay {
    display_id: String,
    operation: Operation,
    step: u64,
    last_sent: Instant,
    /// The latest update that was held back by the throttle, to send before anything else.
    pending: Option<Value>,
}

/// Turns one cell's events into IOPub messages (`msg_type`, content).
pub struct Outputs {
    live: Option<LiveDisplay>,
    min_interval: Duration,
}

impl Outputs {
    /// Outputs for one execution; progress updates closer together than `min_interval` are
    /// held back (except an operation's first and last), the latest of them until the next
    /// message or [`Outputs::flush`], so the display always ends on the last state reported.
    pub fn new(min_interval: Duration) -> Outputs {
        Outputs { live: None, min_interval }
    }

    /// The messages for `event`: none for a throttled progress update; a held-back update
    /// first when another output comes, so that the display shows the last state before it.
    pub fn messages(&mut self, event: Event) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        let same_display = match &event {
            Event::Progress(p) => self.continues(operation(&p.task)),
            _ => false,
        };
        if !same_display {
            out.extend(self.flush());
        }
        out.extend(self.message(event));
        out
    }

    /// Whether progress at `step` of `operation` updates the live display (the same operation
    /// going on), rather than starting a new one (another operation, or one starting over).
    fn continues(&self, (operation, step): (Operation, u64)) -> bool {
        self.live.as_ref().is_some_and(|l| l.operation == operation && step >= l.step)
    }

    /// The update held back by the throttle, if any: to send when the operation or the cell
    /// ends (say, after an interrupt, when no final progress comes).
    pub fn flush(&mut self) -> Option<(&'static str, Value)> {
        let live = self.live.as_mut()?;
        let data = live.pending.take()?;
        live.last_sent = Instant::now();
        Some((
            "update_display_data",
            json!({"data": data, "metadata": {}, "transient": {"display_id": live.display_id}}),
        ))
    }

    fn message(&mut self, event: Event) -> Option<(&'static str, Value)> {
        match event {
            Event::Text(text) => Some(stream("stdout", &text)),
            Event::Warning(text) => Some(stream("stderr", &format!("warning: {text}"))),
            Event::Table(table) => Some((
                "display_data",
                json!({"data": {"text/html": table_html(&table), "text/plain": table_text(&table)}, "metadata": {}, "transient": {}}),
            )),
            Event::Image(image) => Some((
                "display_data",
                json!({
                    "data": {
                        "image/png": base64::engine::general_purpose::STANDARD.encode(&image.png),
                        "text/plain": format!("<{}: {}>", image.name, image.title),
                    },
                    "metadata": {},
                    "transient": {},
                }),
            )),
            Event::Progress(p) => self.progress(p),
        }
    }

    fn progress(&mut self, p: Progress) -> Option<(&'static str, Value)> {
        let (operation, step) = operation(&p.task);
        let continues = self.continues((operation, step));
        let data = json!({"text/plain": progress_text(&p), "text/html": progress_html(&p)});
        if !continues {
            let display_id = uuid::Uuid::new_v4().to_string();
            let content = json!({"data": data, "metadata": {}, "transient": {"display_id": display_id}});
            self.live = Some(LiveDisplay { display_id, operation, step, last_sent: Instant::now(), pending: None });
            return Some(("display_data", content));
        }
        let live = self.live.as_mut()?;
        let new_step = step != live.step;
        live.step = step;
        if !p.finished && !new_step && live.last_sent.elapsed() < self.min_interval {
            live.pending = Some(data);
            return None;
        }
        live.pending = None;
        live.last_sent = Instant::now();
        Some((
            "update_display_data",
            json!({"data": data, "metadata": {}, "transient": {"display_id": live.display_id}}),
        ))
    }
}

fn stream(name: &str, text: &str) -> (&'static str, Value) {
    let mut text = text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    ("stream", json!({"name": name, "text": text}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Image, Table};

    /// Progress of epoch `epoch` of training run `run`.
    fn progress(run: u64, epoch: u64, done: u64, finished: bool) -> Event {
        Event::Progress(Progress {
            task: Task::FitEpoch { run, epoch, epochs: 2 },
            done,
            total: 10,
            message: "loss: 0.5000 - accuracy: 0.8000".into(),
            elapsed: Duration::from_secs(done),
            images: done * 32,
            finished,
        })
    }

    impl Outputs {
        /// The one message for `event` (tests), checking there is at most one.
        fn one(&mut self, event: Event) -> Option<(&'static str, Value)> {
            let mut all = self.messages(event);
            assert!(all.len() <= 1, "{all:?}");
            all.pop()
        }
    }

    #[test]
    fn text_and_warning_are_streams() {
        let mut out = Outputs::new(Duration::ZERO);
        let (kind, content) = out.one(Event::Text("hello".into())).unwrap();
        assert_eq!((kind, &content["name"], &content["text"]), ("stream", &json!("stdout"), &json!("hello\n")));
        let (_, content) = out.one(Event::Warning("careful".into())).unwrap();
        assert_eq!((&content["name"], &content["text"]), (&json!("stderr"), &json!("warning: careful\n")));
    }

    #[test]
    fn tables_and_images_are_display_data() {
        let mut out = Outputs::new(Duration::ZERO);
        let mut t = Table::new(None, &["class", "n"]);
        t.row(vec!["0".into(), "5".into()]);
        let (kind, content) = out.one(Event::Table(t.clone())).unwrap();
        assert_eq!(kind, "display_data");
        assert_eq!(content["data"]["text/html"], table_html(&t));
        assert_eq!(content["data"]["text/plain"], table_text(&t));
        let image = Image { name: "samples".into(), title: "4 samples".into(), png: vec![137, 80, 78, 71], svg: None };
        let (_, content) = out.one(Event::Image(image)).unwrap();
        assert_eq!(content["data"]["image/png"], "iVBORw==");
        assert_eq!(content["data"]["text/plain"], "<samples: 4 samples>");
    }

    #[test]
    fn one_live_display_per_fit() {
        let mut out = Outputs::new(Duration::ZERO);
        let (kind, first) = out.one(progress(1, 1, 1, false)).unwrap();
        assert_eq!(kind, "display_data");
        let id = first["transient"]["display_id"].clone();
        assert!(id.is_string());
        for event in [progress(1, 1, 10, true), progress(1, 2, 1, false), progress(1, 2, 10, true)] {
            let (kind, content) = out.one(event).unwrap();
            assert_eq!(kind, "update_display_data");
            assert_eq!(content["transient"]["display_id"], id);
        }
        // What it shows, as Keras does: time taken and left, images/s, the running measures.
        let (_, content) = out.one(progress(1, 3, 4, false)).unwrap();
        let text = content["data"]["text/plain"].as_str().unwrap();
        assert!(text.ends_with("4/10 - 4s, ETA 6s - 32 images/s - loss: 0.5000 - accuracy: 0.8000"), "{text}");
        assert!(content["data"]["text/html"].as_str().unwrap().contains("ETA 6s - 32 images/s"));
        // A second fit in the same cell is another run: a new display.
        let (kind, second) = out.one(progress(2, 1, 1, false)).unwrap();
        assert_eq!(kind, "display_data");
        assert_ne!(second["transient"]["display_id"], id);
        // The display is the run's, whatever its epoch numbers.
        let second = second["transient"]["display_id"].clone();
        let (kind, third) = out.one(progress(3, 2, 1, false)).unwrap();
        assert_eq!(kind, "display_data");
        assert_ne!(third["transient"]["display_id"], second);
    }

    #[test]
    fn tune_trials_and_find_lr_have_live_displays_too() {
        let mut out = Outputs::new(Duration::ZERO);
        let step = |task, done| {
            Event::Progress(Progress {
                task,
                done,
                total: 10,
                message: String::new(),
                elapsed: Duration::from_secs(1),
                images: 0,
                finished: false,
            })
        };
        let trial = |run, epoch| Task::TrialEpoch { run, trial: run, trials: 2, epoch, epochs: 2 };
        let (kind, first) = out.one(step(trial(1, 1), 3)).unwrap();
        assert_eq!(kind, "display_data");
        assert!(first["data"]["text/plain"].as_str().unwrap().starts_with("trial 1/2 epoch 1/2 ["));
        assert_eq!(out.one(step(trial(1, 2), 1)).unwrap().0, "update_display_data", "the trial's next epoch");
        assert_eq!(out.one(step(trial(2, 1), 1)).unwrap().0, "display_data", "the next trial");
        let (kind, lr) = out.one(step(Task::FindLr, 1)).unwrap();
        assert_eq!(kind, "display_data");
        assert!(lr["data"]["text/plain"].as_str().unwrap().starts_with("find lr ["));
        assert_eq!(out.one(step(Task::FindLr, 2)).unwrap().0, "update_display_data");
    }

    #[test]
    fn throttles_updates_but_not_the_last() {
        let mut out = Outputs::new(Duration::from_secs(3600));
        assert!(out.one(progress(1, 1, 1, false)).is_some());
        assert!(out.one(progress(1, 1, 2, false)).is_none());
        assert!(out.one(progress(1, 1, 10, true)).is_some());
        assert!(out.one(progress(1, 2, 1, false)).is_some(), "a new epoch is shown at once");
    }

    #[test]
    fn the_last_state_is_always_shown() {
        let mut out = Outputs::new(Duration::from_secs(3600));
        let (_, first) = out.one(progress(1, 1, 1, false)).unwrap();
        let id = first["transient"]["display_id"].clone();
        assert!(out.one(progress(1, 1, 2, false)).is_none());
        assert!(out.one(progress(1, 1, 7, false)).is_none());
        // The fit is interrupted: no final progress, the cell ends.
        let (kind, last) = out.flush().unwrap();
        assert_eq!((kind, &last["transient"]["display_id"]), ("update_display_data", &id));
        assert!(last["data"]["text/plain"].as_str().unwrap().contains("7/10"), "{last}");
        assert!(out.flush().is_none(), "flushed once");
        // A held-back update goes out before the next text (the epoch line, the stop notice).
        assert!(out.one(progress(1, 1, 8, false)).is_none());
        let all = out.messages(Event::Text("stopped".into()));
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].0, "update_display_data");
        assert!(all[0].1["data"]["text/plain"].as_str().unwrap().contains("8/10"));
        assert_eq!(all[1].0, "stream");
        // Nothing is held back after a shown update.
        assert!(out.one(progress(1, 1, 10, true)).is_some());
        assert!(out.flush().is_none());
        // A second fit in the cell: the first one's held-back state goes out before its display.
        assert!(out.one(progress(1, 2, 3, false)).is_some());
        assert!(out.one(progress(1, 2, 4, false)).is_none());
        let all = out.messages(progress(2, 1, 1, false));
        assert_eq!(all.iter().map(|m| m.0).collect::<Vec<_>>(), vec!["update_display_data", "display_data"]);
        assert!(all[0].1["data"]["text/plain"].as_str().unwrap().contains("4/10"));
        assert_eq!(all[0].1["transient"]["display_id"], id);
        assert!(Outputs::new(Duration::ZERO).flush().is_none(), "no display yet");
    }
}
