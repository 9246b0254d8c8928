//! The Jupyter kernel: the messaging protocol 5.3 over ZeroMQ (the pure-Rust `zeromq` crate).
//!
//! Sockets run as tokio tasks; cells run on their own thread, which owns the [`Session`], so
//! the control socket can answer `interrupt_request` (raising the session's interrupt flag)
//! while a `fit` runs. Every incoming message is verified with the connection key (those
//! with a wrong HMAC are dropped and logged to stderr) and every outgoing one is signed.

pub mod display;
pub mod install;
pub mod replies;
pub mod wire;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use zeromq::prelude::*;
use zeromq::{PubSocket, RepSocket, RouterSocket, ZmqMessage};

use crate::lang;
use crate::session::{Event, RunError, Session};
use display::Outputs;
use wire::{ConnectionInfo, Message, Signer};

/// Progress updates of a running `fit` are sent at most this often.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Time given to the sockets to flush the last replies before the process exits.
const FLUSH_BEFORE_EXIT: Duration = Duration::from_millis(300);

fn log(text: &str) {
    eprintln!("mnistlab kernel: {text}");
}

/// Runs the kernel described by `connection_file` until a `shutdown_request`.
pub fn run(connection_file: &Path) -> Result<(), String> {
    let info = ConnectionInfo::read(connection_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(serve(info))
}

/// Where outgoing messages go: channels drained by the socket tasks.
#[derive(Clone)]
struct Outbox {
    session: String,
    shell: UnboundedSender<Message>,
    iopub: UnboundedSender<Message>,
}

impl Outbox {
    /// Sends a reply to `request` on the shell socket.
    fn reply(&self, request: &Message, msg_type: &str, content: Value) {
        let _ = self.shell.send(Message::child(request, msg_type, content, &self.session));
    }

    /// Publishes a message caused by `parent` on IOPub (the topic is the message type).
    fn publish(&self, parent: &Message, msg_type: &str, content: Value) {
        let mut message = Message::child(parent, msg_type, content, &self.session);
        message.identities = vec![msg_type.as_bytes().to_vec()];
        let _ = self.iopub.send(message);
    }

    fn status(&self, parent: &Message, state: &str) {
        self.publish(parent, "status", json!({"execution_state": state}));
    }
}

fn to_zmq(frames: Vec<Vec<u8>>) -> ZmqMessage {
    let mut frames = frames.into_iter();
    let mut message = ZmqMessage::from(frames.next().unwrap_or_default());
    for frame in frames {
        message.push_back(frame.into());
    }
    message
}

fn from_zmq(message: ZmqMessage) -> Vec<Vec<u8>> {
    message.into_vec().into_iter().map(|b| b.to_vec()).collect()
}

async fn bind<S: Socket>(socket: &mut S, info: &ConnectionInfo, port: u16, name: &str) -> Result<(), String> {
    let endpoint = info.endpoint(port);
    socket.bind(&endpoint).await.map(|_| ()).map_err(|e| format!("cannot bind the {name} socket to {endpoint}: {e}"))
}

/// Reads and verifies one message; `None` for frames to drop (logged).
fn accept(frames: Vec<Vec<u8>>, signer: &Signer, socket: &str) -> Option<Message> {
    match Message::parse(&frames, signer) {
        Ok(message) => Some(message),
        Err(e) => {
            log(&format!("dropped a message on {socket}: {e}"));
            None
        }
    }
}

async fn serve(info: ConnectionInfo) -> Result<(), String> {
    let signer = Signer::new(&info.key);
    let mut heartbeat = RepSocket::new();
    let mut shell = RouterSocket::new();
    let mut control = RouterSocket::new();
    let mut stdin = RouterSocket::new();
    let mut iopub = PubSocket::new();
    bind(&mut heartbeat, &info, info.hb_port, "heartbeat").await?;
    bind(&mut shell, &info, info.shell_port, "shell").await?;
    bind(&mut control, &info, info.control_port, "control").await?;
    bind(&mut stdin, &info, info.stdin_port, "stdin").await?;
    bind(&mut iopub, &info, info.iopub_port, "iopub").await?;

    let (iopub_tx, mut iopub_rx): (UnboundedSender<Message>, UnboundedReceiver<Message>) = unbounded_channel();
    let (shell_tx, mut shell_rx): (UnboundedSender<Message>, UnboundedReceiver<Message>) = unbounded_channel();
    let outbox = Outbox { session: uuid::Uuid::new_v4().to_string(), shell: shell_tx, iopub: iopub_tx };

    tokio::spawn(async move {
        loop {
            match heartbeat.recv().await {
                Ok(ping) => {
                    if heartbeat.send(ping).await.is_err() {
                        log("heartbeat: cannot answer a ping");
                    }
                }
                Err(e) => log(&format!("heartbeat: {e}")),
            }
        }
    });

    let iopub_signer = signer.clone();
    tokio::spawn(async move {
        while let Some(message) = iopub_rx.recv().await {
            if let Err(e) = iopub.send(to_zmq(message.to_frames(&iopub_signer))).await {
                log(&format!("iopub: cannot publish {}: {e}", message.msg_type()));
            }
        }
    });

    let (mut shell_send, mut shell_recv) = shell.split();
    let shell_signer = signer.clone();
    tokio::spawn(async move {
        while let Some(message) = shell_rx.recv().await {
            if let Err(e) = shell_send.send(to_zmq(message.to_frames(&shell_signer))).await {
                log(&format!("shell: cannot send {}: {e}", message.msg_type()));
            }
        }
    });

    let session = Session::new();
    let interrupts = Interrupts { session: session.interrupt_flag(), cell: Arc::new(AtomicBool::new(false)) };
    let (requests_tx, requests_rx) = mpsc::channel::<Message>();
    let executor = Executor { session, outbox: outbox.clone(), interrupts: interrupts.clone(), execution_count: 0 };
    std::thread::Builder::new()
        .name("mnistlab-cells".into())
        .spawn(move || executor.run(requests_rx))
        .map_err(|e| format!("cannot start the cell thread: {e}"))?;

    let shell_recv_signer = signer.clone();
    tokio::spawn(async move {
        loop {
            match shell_recv.recv().await {
                Ok(frames) => {
                    if let Some(message) = accept(from_zmq(frames), &shell_recv_signer, "shell") {
                        let _ = requests_tx.send(message);
                    }
                }
                Err(e) => log(&format!("shell: {e}")),
            }
        }
    });

    #[cfg(unix)]
    tokio::spawn(async {
        // Like ipykernel: exit when the process that started the kernel has gone.
        let parent = std::os::unix::process::parent_id();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if std::os::unix::process::parent_id() != parent {
                log("the parent process has exited; shutting down");
                std::process::exit(0);
            }
        }
    });

    // Keep stdin bound: the kernel never asks for input, but clients connect to it.
    let _stdin = stdin;
    outbox.publish(
        &Message::orphan("status", json!({}), &outbox.session),
        "status",
        json!({"execution_state": "starting"}),
    );

    loop {
        let frames = match control.recv().await {
            Ok(frames) => from_zmq(frames),
            Err(e) => {
                log(&format!("control: {e}"));
                continue;
            }
        };
        let Some(request) = accept(frames, &signer, "control") else { continue };
        outbox.status(&request, "busy");
        let (msg_type, content, exit) = match request.msg_type() {
            "kernel_info_request" => ("kernel_info_reply", replies::kernel_info(), false),
            "interrupt_request" => {
                interrupts.raise();
                ("interrupt_reply", json!({"status": "ok"}), false)
            }
            "shutdown_request" => {
                let restart = request.content["restart"].as_bool().unwrap_or(false);
                ("shutdown_reply", json!({"status": "ok", "restart": restart}), true)
            }
            other => {
                log(&format!("control: ignored a {other}"));
                outbox.status(&request, "idle");
                continue;
            }
        };
        let reply = Message::child(&request, msg_type, content, &outbox.session);
        if let Err(e) = control.send(to_zmq(reply.to_frames(&signer))).await {
            log(&format!("control: cannot send {msg_type}: {e}"));
        }
        outbox.status(&request, "idle");
        if exit {
            interrupts.raise();
            tokio::time::sleep(FLUSH_BEFORE_EXIT).await;
            std::process::exit(0);
        }
    }
}

/// The flags an interrupt raises: the session's (stops a `fit` after its batch) and the cell's
/// (stops the statements after it).
#[derive(Clone)]
struct Interrupts {
    session: Arc<AtomicBool>,
    cell: Arc<AtomicBool>,
}

impl Interrupts {
    fn raise(&self) {
        self.cell.store(true, Ordering::SeqCst);
        self.session.store(true, Ordering::SeqCst);
    }
}

/// Why a cell stopped: `ename`, `evalue`, traceback lines.
#[derive(Debug, Clone, PartialEq)]
struct CellError {
    ename: String,
    evalue: String,
    traceback: Vec<String>,
}

impl CellError {
    fn from_run(error: &RunError) -> CellError {
        match error {
            RunError::Parse { error, .. } => CellError {
                ename: "ParseError".into(),
                evalue: format!("line {}:{}: expected {}", error.line, error.col, error.expected),
                traceback: error.to_string().lines().map(str::to_string).collect(),
            },
            RunError::Statement { error, .. } => CellError {
                ename: "StatementError".into(),
                evalue: error.message.clone(),
                traceback: error.to_string().lines().map(str::to_string).collect(),
            },
        }
    }

    fn interrupted() -> CellError {
        let evalue = "interrupted; the statements after it did not run".to_string();
        CellError {
            ename: "Interrupted".into(),
            evalue: evalue.clone(),
            traceback: vec![format!("Interrupted: {evalue}")],
        }
    }
}

/// Runs a cell's statements in order, stopping at the first error or an interrupt.
fn run_cell(
    session: &mut Session,
    code: &str,
    interrupted: &AtomicBool,
    out: &mut dyn FnMut(Event),
) -> Result<(), CellError> {
    let statements =
        lang::parse_program(code).map_err(|error| CellError::from_run(&RunError::Parse { file: None, error }))?;
    for statement in &statements {
        if interrupted.load(Ordering::SeqCst) {
            return Err(CellError::interrupted());
        }
        session.execute(statement, out).map_err(|e| CellError::from_run(&e))?;
    }
    if interrupted.load(Ordering::SeqCst) {
        return Err(CellError::interrupted());
    }
    Ok(())
}

/// The thread that owns the session and answers shell requests in order.
struct Executor {
    session: Session,
    outbox: Outbox,
    interrupts: Interrupts,
    execution_count: u64,
}

impl Executor {
    fn run(mut self, requests: mpsc::Receiver<Message>) {
        while let Ok(request) = requests.recv() {
            self.outbox.status(&request, "busy");
            let exit = self.handle(&request);
            self.outbox.status(&request, "idle");
            if exit {
                std::thread::sleep(FLUSH_BEFORE_EXIT);
                std::process::exit(0);
            }
        }
    }

    /// Answers one shell request; true when the kernel should exit.
    fn handle(&mut self, request: &Message) -> bool {
        let content = &request.content;
        let code = content["code"].as_str().unwrap_or("");
        let cursor = content["cursor_pos"].as_u64().unwrap_or(code.chars().count() as u64) as usize;
        let reply = |msg_type: &str, body: Value| self.outbox.reply(request, msg_type, body);
        match request.msg_type() {
            "kernel_info_request" => reply("kernel_info_reply", replies::kernel_info()),
            "execute_request" => self.execute(request),
            "complete_request" => reply("complete_reply", replies::complete(code, cursor)),
            "is_complete_request" => reply("is_complete_reply", replies::is_complete(code)),
            "inspect_request" => reply("inspect_reply", replies::inspect(code, cursor)),
            "history_request" => reply("history_reply", json!({"status": "ok", "history": []})),
            "comm_info_request" => reply("comm_info_reply", json!({"status": "ok", "comms": {}})),
            "shutdown_request" => {
                let restart = content["restart"].as_bool().unwrap_or(false);
                reply("shutdown_reply", json!({"status": "ok", "restart": restart}));
                return true;
            }
            "comm_open" | "comm_msg" | "comm_close" => {}
            other => log(&format!("shell: ignored a {other}")),
        }
        false
    }

    fn execute(&mut self, request: &Message) {
        let content = &request.content;
        let code = content["code"].as_str().unwrap_or("");
        let silent = content["silent"].as_bool().unwrap_or(false);
        let store_history = !silent && content["store_history"].as_bool().unwrap_or(true);
        if store_history {
            self.execution_count += 1;
        }
        let count = self.execution_count;
        if !silent {
            self.outbox.publish(request, "execute_input", json!({"code": code, "execution_count": count}));
        }
        self.interrupts.cell.store(false, Ordering::SeqCst);
        let mut outputs = Outputs::new(PROGRESS_INTERVAL);
        let outbox = &self.outbox;
        let result = run_cell(&mut self.session, code, &self.interrupts.cell, &mut |event| {
            if silent {
                return;
            }
            if let Some((msg_type, body)) = outputs.message(event) {
                outbox.publish(request, msg_type, body);
            }
        });
        self.interrupts.cell.store(false, Ordering::SeqCst);
        match result {
            Ok(()) => self.outbox.reply(
                request,
                "execute_reply",
                json!({"status": "ok", "execution_count": count, "user_expressions": {}, "payload": []}),
            ),
            Err(e) => {
                let error = json!({"ename": e.ename, "evalue": e.evalue, "traceback": e.traceback});
                if !silent {
                    self.outbox.publish(request, "error", error.clone());
                }
                let mut body =
                    json!({"status": "error", "execution_count": count, "user_expressions": {}, "payload": []});
                body.as_object_mut().expect("an object").extend(error.as_object().expect("an object").clone());
                self.outbox.reply(request, "execute_reply", body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(session: &mut Session, code: &str, interrupted: &AtomicBool) -> (Vec<Event>, Result<(), CellError>) {
        let mut events = Vec::new();
        let result = run_cell(session, code, interrupted, &mut |e| events.push(e));
        (events, result)
    }

    #[test]
    fn cell_runs_in_order_and_stops_at_the_first_error() {
        let mut session = Session::new();
        let flag = AtomicBool::new(false);
        let (events, result) = run(&mut session, "print \"a\"\ninfo\nprint \"b\"", &flag);
        assert_eq!(events, vec![Event::Text("a".into())]);
        let error = result.unwrap_err();
        assert_eq!(error.ename, "StatementError");
        assert!(error.evalue.contains("load mnist"), "{}", error.evalue);
        assert!(error.traceback[0].contains("info"), "{:?}", error.traceback);
    }

    #[test]
    fn parse_error_runs_nothing() {
        let mut session = Session::new();
        let flag = AtomicBool::new(false);
        let (events, result) = run(&mut session, "print \"a\"\nlod mnist", &flag);
        assert!(events.is_empty());
        let error = result.unwrap_err();
        assert_eq!(error.ename, "ParseError");
        assert!(error.evalue.starts_with("line 2:1"), "{}", error.evalue);
        assert!(error.traceback.iter().any(|line| line.ends_with("| lod mnist")), "{:?}", error.traceback);
    }

    #[test]
    fn interrupt_stops_the_remaining_statements() {
        let mut session = Session::new();
        let flag = AtomicBool::new(true);
        let (events, result) = run(&mut session, "print \"a\"", &flag);
        assert!(events.is_empty());
        assert_eq!(result.unwrap_err().ename, "Interrupted");
    }
}
