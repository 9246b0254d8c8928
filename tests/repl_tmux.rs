//! The REPL in a real terminal: the binary runs in a detached tmux session of 160 columns and
//! keys are sent to it as a user types them (`tmux send-keys`) or pastes them (`tmux
//! paste-buffer -p`, a bracketed paste). Nothing typed may be lost: lines typed ahead while a
//! statement runs run in order after it, a pasted block runs line by line and stops at its
//! first failing line, naming what did not run. Skipped (saying why) only where tmux is absent;
//! the last test feeds a pipe instead, a line at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A tmux server of its own (its own socket, so that no other tmux is touched) running the
/// REPL in a temporary folder; killed when dropped.
struct Repl {
    socket: String,
    dir: tempfile::TempDir,
}

/// Whether tmux can be run here; says why the test is skipped when not.
fn tmux_present() -> bool {
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            eprintln!("skipped: tmux is not installed (apt-get install tmux); these tests type into a real terminal");
            false
        }
    }
}

impl Repl {
    /// Starts the REPL in a 160×50 terminal and waits for its first prompt.
    fn start(name: &str) -> Repl {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let socket = format!("mnistlab-{name}-{}", std::process::id());
        // The REPL's history goes to the temporary folder, not the user's.
        let command = format!(
            "env XDG_DATA_HOME={} {}",
            shell_quote(&dir.path().join("data")),
            shell_quote(Path::new(env!("CARGO_BIN_EXE_mnistlab")))
        );
        let repl = Repl { socket, dir };
        let out = repl.tmux(
            &["new-session", "-d", "-s", "lab", "-x", "160", "-y", "50", "-c"],
            &[&repl.dir.path().display().to_string(), &command],
        );
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        // The whole session stays in the scrollback, for the checks.
        repl.tmux(&["set-option", "-g", "history-limit", "20000"], &[]);
        repl.wait_for("first prompt", Duration::from_secs(60), |screen| screen.contains("lab> "));
        repl
    }

    fn tmux(&self, args: &[&str], more: &[&str]) -> Output {
        Command::new("tmux").args(["-L", &self.socket]).args(args).args(more).output().expect("tmux runs")
    }

    /// Types `line` and Enter.
    fn type_line(&self, line: &str) {
        let out = self.tmux(&["send-keys", "-t", "lab", "-l", line], &[]);
        assert!(out.status.success(), "send-keys: {}", String::from_utf8_lossy(&out.stderr));
        self.tmux(&["send-keys", "-t", "lab", "Enter"], &[]);
    }

    /// Pastes `text` as a terminal does: a bracketed paste, each newline sent as Enter.
    fn paste(&self, text: &str) {
        let file = self.dir.path().join("paste.txt");
        std::fs::write(&file, text).expect("the paste is written");
        let out = self.tmux(&["load-buffer", "-b", "block"], &[&file.display().to_string()]);
        assert!(out.status.success(), "load-buffer: {}", String::from_utf8_lossy(&out.stderr));
        let out = self.tmux(&["paste-buffer", "-p", "-b", "block", "-t", "lab"], &[]);
        assert!(out.status.success(), "paste-buffer: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The whole terminal: scrollback and screen, lines joined where the terminal wrapped them.
    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "lab"], &[]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `done` holds for the terminal, or fails after `limit` showing it.
    fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(start.elapsed() < limit, "waited {limit:?} for {what}; the terminal:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The statements `:save` writes: those that ran, in order.
    fn saved(&self) -> Vec<String> {
        let file = self.dir.path().join("ran.lab");
        self.type_line(&format!(":save {}", file.display()));
        self.wait_for("`:save`", Duration::from_secs(30), |s| s.contains("statements to "));
        std::fs::read_to_string(&file).expect(":save wrote").lines().map(str::to_string).collect()
    }

    fn folder(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"], &[]);
    }
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The lines of `screen` that are exactly `text` (output lines, not the prompt lines that
/// echo a statement).
fn line_index(screen: &str, text: &str) -> Option<usize> {
    screen.lines().position(|l| l.trim_end() == text)
}

#[test]
fn lines_typed_during_a_fit_run_in_order_after_it() {
    if !tmux_present() {
        return;
    }
    let repl = Repl::start("ahead");
    // Sent in one go, each with Enter, as the issue did: none may be dropped.
    let setup = ["load mnist", "subset 500 per class", "normalize", "model conv8 pool dense32", "fit 3"];
    let ahead =
        ["print \"ahead one\"", "subset 100 per class", "print \"ahead three\"", "evaluate", "print \"ahead five\""];
    for line in setup {
        repl.type_line(line);
    }
    // The fit has started (its first epoch's bar or line is on screen): type ahead.
    repl.wait_for("the fit", Duration::from_secs(120), |s| s.contains("epoch 1/3") || s.contains("Epoch 1/3"));
    for line in ahead {
        repl.type_line(line);
    }
    let screen =
        repl.wait_for("last typed-ahead line", Duration::from_secs(300), |s| line_index(s, "ahead five").is_some());
    // The fit ran all its epochs before anything typed ahead.
    let epoch3 = screen.find("Epoch 3/3").unwrap_or_else(|| panic!("the fit's last epoch:\n{screen}"));
    let first = screen.find("\nahead one").unwrap_or_else(|| panic!("the first line typed ahead:\n{screen}"));
    assert!(epoch3 < first, "the fit ends before the lines typed ahead run:\n{screen}");
    let outputs: Vec<usize> = ["ahead one", "ahead three", "ahead five"]
        .iter()
        .map(|t| line_index(&screen, t).unwrap_or_else(|| panic!("`{t}` printed:\n{screen}")))
        .collect();
    assert!(outputs.windows(2).all(|w| w[0] < w[1]), "in order:\n{screen}");
    // Every statement ran, in the order typed.
    let ran = repl.saved();
    let typed: Vec<String> = setup.iter().chain(&ahead).map(|s| s.to_string()).collect();
    assert_eq!(ran, typed, "the terminal:\n{screen}");
    assert!(repl.folder().join("ran.lab").exists());
}

#[test]
fn a_pasted_block_runs_line_by_line_and_stops_at_its_first_failure() {
    if !tmux_present() {
        return;
    }
    let repl = Repl::start("paste");
    // A block of four lines that all run, pasted whole (with its last newline).
    repl.paste("print \"p1\"\nseed 7\nprint \"p3\"\nprint \"p4\"\n");
    let screen = repl.wait_for("the pasted block", Duration::from_secs(60), |s| line_index(s, "p4").is_some());
    let lines: Vec<usize> = ["p1", "p3", "p4"].iter().map(|t| line_index(&screen, t).expect("printed")).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "in order:\n{screen}");
    // A block whose third line fails (no data for `fit`): the lines after it do not run, and
    // the REPL says which.
    repl.paste("print \"q1\"\nprint \"q2\"\nfit 1\nprint \"q4\"\nprint \"q5\"\n");
    let screen = repl.wait_for("the second block", Duration::from_secs(60), |s| s.contains("`print \"q5\"`"));
    let q2 = line_index(&screen, "q2").unwrap_or_else(|| panic!("q2 ran:\n{screen}"));
    let failed = screen.lines().position(|l| l.starts_with("error: ") && l.contains("fit")).expect("fit's error");
    assert!(q2 < failed, "{screen}");
    for line in ["print \"q4\"", "print \"q5\""] {
        let note = format!("not run: `{line}` (the paste stopped at `fit 1`)");
        assert!(screen.contains(&note), "`{note}` in:\n{screen}");
    }
    assert!(line_index(&screen, "q4").is_none() && line_index(&screen, "q5").is_none(), "{screen}");
    // After the paste, typing runs again.
    repl.type_line("print \"typed after\"");
    repl.wait_for("the line typed after the paste", Duration::from_secs(30), |s| {
        line_index(s, "typed after").is_some()
    });
    let ran = repl.saved();
    let expected = [
        "print \"p1\"",
        "seed 7",
        "print \"p3\"",
        "print \"p4\"",
        "print \"q1\"",
        "print \"q2\"",
        "print \"typed after\"",
    ];
    assert_eq!(ran, expected, "{}", repl.screen());
}

#[test]
fn ctrl_c_stops_a_fit_at_its_true_count_and_keeps_the_lines_typed_ahead() {
    if !tmux_present() {
        return;
    }
    let repl = Repl::start("interrupt");
    for line in ["load mnist", "normalize", "model conv8 pool dense32", "fit 20"] {
        repl.type_line(line);
    }
    repl.wait_for("the fit's bar", Duration::from_secs(120), |s| s.contains("epoch 1/20 ["));
    repl.type_line("print \"typed during the fit\"");
    repl.tmux(&["send-keys", "-t", "lab", "C-c"], &[]);
    let screen = repl.wait_for("the line typed during the fit", Duration::from_secs(120), |s| {
        line_index(s, "typed during the fit").is_some()
    });
    let note = screen
        .lines()
        .find(|l| l.contains("interrupted during epoch 1 after"))
        .unwrap_or_else(|| panic!("the interrupt's note:\n{screen}"));
    // `… after 93 of 1875 batches`: the bar left above it shows the same count, not a full bar.
    let words: Vec<&str> = note.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "after").expect("after");
    let (done, total) = (words[at + 1], words[at + 3]);
    assert!(screen.contains(&format!("] {done}/{total} - ")), "the bar at {done}/{total}:\n{screen}");
    assert_ne!(done, total, "{screen}");
}

#[test]
fn piped_lines_sent_one_after_another_all_run_in_order() {
    use std::io::Write;
    use std::process::Stdio;
    // No terminal (and no tmux) here: standard input is a pipe fed a line at a time.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnistlab"))
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mnistlab runs");
    let mut stdin = child.stdin.take().expect("a pipe");
    for i in 1..=5 {
        stdin.write_all(format!("print \"line {i}\"\n").as_bytes()).expect("the line is sent");
        stdin.flush().expect("flushed");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let out = child.wait_with_output().expect("mnistlab ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let expected: Vec<String> = (1..=5).map(|i| format!("line {i}")).collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);
}
