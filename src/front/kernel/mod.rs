//! The Jupyter kernel: the messaging protocol 5.3 over ZeroMQ (the pure-Rust `zeromq` crate).
//!
//! Sockets run as tokio tasks; cells run on their own thread, which owns the [`Session`], so
//! the control socket can answer `interrupt_request` (raising the session's interrupt flag)
//! while a `fit` runs. Every incoming message is verified with the connection key (those
//! with a wrong HMAC are dropped and logged to stderr) and every outgoing one is signed.
//!
//! Nothing a client sends ends the kernel: each shell and control request is handled under
//! `catch_unwind`, and a handler that panics still sends its reply (`status: error`, ename
//! `InternalError`) and the `idle` status, and the next request is served. A message that is
//! not a request (no `msg_type`) is dropped and logged. For tests, the environment variable
//! `MNISTLAB_DEBUG_PANIC` naming message types (`complete_request`, comma-separated) makes
//! their handlers panic.

pub mod display;
pub mod install;
pub mod replies;
pub mod wire;

use crate::guard;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use zeromq::prelude::*;
use zeromq::{PubSocket, RepSocket, RouterRecvHalf, RouterSocket, ZmqMessage};

use crate::lang;
use crate::session::{Event, RunError, Session};
use display::Outputs;
use wire::{ConnectionError, ConnectionInfo, Message, Signer};

/// Progress updates of a running `fit` are sent at most this often.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Time given to the sockets to flush the last replies before the process exits.
const FLUSH_BEFORE_EXIT: Duration = Duration::from_millis(300);

fn log(text: &str) {
    eprintln!("mnistlab kernel: {text}");
}

/// Why the kernel cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The connection file cannot be used.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The async runtime does not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// A socket cannot be bound to its endpoint.
    #[error("cannot bind the {socket} socket to {endpoint}: {source}")]
    Bind {
        /// The socket (`shell`, `iopub`, …).
        socket: &'static str,
        /// The endpoint it was to be bound to.
        endpoint: String,
        /// The failure.
        source: zeromq::ZmqError,
    },
    /// The thread that runs cells does not start.
    #[error("cannot start the cell thread: {0}")]
    Thread(std::io::Error),
}

/// Runs the kernel described by `connection_file` until a `shutdown_request`.
pub fn run(connection_file: &Path) -> Result<(), KernelError> {
    let info = ConnectionInfo::read(connection_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(KernelError::Runtime)?;
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

async fn bind<S: Socket>(
    socket: &mut S,
    info: &ConnectionInfo,
    port: u16,
    name: &'static str,
) -> Result<(), KernelError> {
    let endpoint = info.endpoint(port);
    match socket.bind(&endpoint).await {
        Ok(_) => Ok(()),
        Err(source) => Err(KernelError::Bind { socket: name, endpoint, source }),
    }
}

/// A received message: a request to handle, or a signed request whose parts after the header
/// are not JSON (answered with an `InvalidRequest` error, so the client is not left waiting).
#[derive(Debug)]
enum Incoming {
    Request(Message),
    Invalid(Message, String),
}

/// Reads and verifies one message; `None` for frames to drop (logged): frames that do not
/// parse or verify, and messages whose header names no `msg_type`.
fn accept(frames: Vec<Vec<u8>>, signer: &Signer, socket: &str) -> Option<Incoming> {
    match guard::catch(|| Message::parse(&frames, signer)) {
        Ok(Ok(message)) if !message.msg_type().is_empty() => Some(Incoming::Request(message)),
        Ok(Err(e @ wire::WireError::Json(_))) => match invalid_request(&frames, signer) {
            Some(request) => {
                log(&format!("{socket}: a {} that is not JSON: {e}", request.msg_type()));
                Some(Incoming::Invalid(request, e.to_string()))
            }
            None => {
                log(&format!("dropped a message on {socket}: {e}"));
                None
            }
        },
        Ok(Ok(message)) => {
            let header = message.header.to_string();
            let header: String = header.chars().take(200).collect();
            log(&format!("dropped a message on {socket}: its header has no msg_type string: {header}"));
            None
        }
        Ok(Err(e)) => {
            log(&format!("dropped a message on {socket}: {e}"));
            None
        }
        Err(message) => {
            log(&format!("dropped a message on {socket}: reading it panicked: {message}"));
            None
        }
    }
}

/// The request named by frames whose signature is right and whose header is JSON naming a
/// request type, though other parts are not JSON: the header and parent header, empty content.
fn invalid_request(frames: &[Vec<u8>], signer: &Signer) -> Option<Message> {
    let at = frames.iter().position(|f| f.as_slice() == b"<IDS|MSG>")?;
    let rest = &frames[at + 1..];
    if rest.len() < 5 {
        return None;
    }
    let parts: Vec<&[u8]> = rest[1..5].iter().map(Vec::as_slice).collect();
    if !signer.verify(&rest[0], &parts) {
        return None;
    }
    let header: Value = serde_json::from_slice(parts[0]).ok()?;
    header.get("msg_type").and_then(Value::as_str).filter(|t| t.ends_with("_request"))?;
    Some(Message {
        identities: frames[..at].to_vec(),
        header,
        parent_header: serde_json::from_slice(parts[1]).unwrap_or_else(|_| json!({})),
        metadata: json!({}),
        content: json!({}),
        buffers: Vec::new(),
    })
}

/// The message types named by `MNISTLAB_DEBUG_PANIC` (a test hook); other words in it (the
/// session's statement keywords) are not the kernel's.
fn debug_panics() -> Vec<String> {
    crate::guard::debug_panic_words().into_iter().filter(|w| w.ends_with("_request")).collect()
}

/// Panics when `msg_type` is named by the test hook.
fn forced_panic(hooks: &[String], msg_type: &str) {
    if hooks.iter().any(|h| h == msg_type) {
        panic!("MNISTLAB_DEBUG_PANIC={msg_type}: a panic forced in the {msg_type} handler (a test hook)");
    }
}

/// What a handler that panicked answers: an `InternalError` with a hint to report it.
fn internal_error(msg_type: &str, message: &str) -> CellError {
    let evalue = format!("mnistlab hit a bug while handling a {msg_type}: {message}");
    CellError {
        ename: "InternalError".into(),
        traceback: vec![
            format!("InternalError: {evalue}"),
            "This is a bug in mnistlab, not in your code: please report it with the cell or request that \
             caused it. The kernel is still running."
                .into(),
        ],
        evalue,
    }
}

/// The error of a request that cannot be read as one.
fn invalid_error(evalue: String) -> CellError {
    CellError { ename: "InvalidRequest".into(), traceback: vec![format!("InvalidRequest: {evalue}")], evalue }
}

/// The reply type of a request type (`complete_request` → `complete_reply`).
fn reply_type(msg_type: &str) -> Option<String> {
    msg_type.strip_suffix("_request").map(|stem| format!("{stem}_reply"))
}

/// The content of a non-execute reply for an error.
fn error_content(e: &CellError) -> Value {
    json!({"status": "error", "ename": e.ename, "evalue": e.evalue, "traceback": e.traceback})
}

/// Serves the kernel on the sockets `info` names until a `shutdown_request`.
async fn serve(info: ConnectionInfo) -> Result<(), KernelError> {
    let signer = Signer::new(&info.key);
    let Sockets { heartbeat, shell, control, stdin, iopub } = Sockets::bind(&info).await?;
    let (iopub_tx, iopub_rx) = unbounded_channel();
    let (shell_tx, shell_rx) = unbounded_channel();
    let outbox = Outbox { session: uuid::Uuid::new_v4().to_string(), shell: shell_tx, iopub: iopub_tx };
    tokio::spawn(echo_heartbeats(heartbeat));
    tokio::spawn(send_all(iopub, iopub_rx, signer.clone(), "iopub: cannot publish"));
    let (shell_send, shell_recv) = shell.split();
    tokio::spawn(send_all(shell_send, shell_rx, signer.clone(), "shell: cannot send"));
    let (requests_tx, requests_rx) = mpsc::channel::<Incoming>();
    let (interrupts, debug_panics) = start_cells(outbox.clone(), requests_rx)?;
    tokio::spawn(receive_requests(shell_recv, signer.clone(), requests_tx));
    #[cfg(unix)]
    tokio::spawn(exit_with_parent());
    // Keep stdin bound: the kernel never asks for input, but clients connect to it.
    let _stdin = stdin;
    outbox.publish(
        &Message::orphan("status", json!({}), &outbox.session),
        "status",
        json!({"execution_state": "starting"}),
    );
    Control { socket: control, signer, outbox, interrupts, debug_panics }.serve().await
}

/// The kernel's sockets, bound to the ports of the connection file.
struct Sockets {
    heartbeat: RepSocket,
    shell: RouterSocket,
    control: RouterSocket,
    stdin: RouterSocket,
    iopub: PubSocket,
}

impl Sockets {
    /// Binds every socket to its port in `info`.
    async fn bind(info: &ConnectionInfo) -> Result<Sockets, KernelError> {
        let mut sockets = Sockets {
            heartbeat: RepSocket::new(),
            shell: RouterSocket::new(),
            control: RouterSocket::new(),
            stdin: RouterSocket::new(),
            iopub: PubSocket::new(),
        };
        bind(&mut sockets.heartbeat, info, info.hb_port, "heartbeat").await?;
        bind(&mut sockets.shell, info, info.shell_port, "shell").await?;
        bind(&mut sockets.control, info, info.control_port, "control").await?;
        bind(&mut sockets.stdin, info, info.stdin_port, "stdin").await?;
        bind(&mut sockets.iopub, info, info.iopub_port, "iopub").await?;
        Ok(sockets)
    }
}

/// Answers every heartbeat ping with the same bytes.
async fn echo_heartbeats(mut heartbeat: RepSocket) {
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
}

/// Signs and sends every message from `outgoing` on `socket`; a message that cannot be sent
/// is logged after `failed`.
async fn send_all<S: SocketSend + Send + 'static>(
    mut socket: S,
    mut outgoing: UnboundedReceiver<Message>,
    signer: Signer,
    failed: &'static str,
) {
    while let Some(message) = outgoing.recv().await {
        if let Err(e) = socket.send(to_zmq(message.to_frames(&signer))).await {
            log(&format!("{failed} {}: {e}", message.msg_type()));
        }
    }
}

/// Reads the shell socket and hands each accepted request, in order, to the cell thread.
async fn receive_requests(mut shell: RouterRecvHalf, signer: Signer, requests: mpsc::Sender<Incoming>) {
    loop {
        match shell.recv().await {
            Ok(frames) => {
                if let Some(message) = accept(from_zmq(frames), &signer, "shell") {
                    let _ = requests.send(message);
                }
            }
            Err(e) => log(&format!("shell: {e}")),
        }
    }
}

/// Like ipykernel: exits when the process that started the kernel has gone.
#[cfg(unix)]
async fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if std::os::unix::process::parent_id() != parent {
            log("the parent process has exited; shutting down");
            std::process::exit(0);
        }
    }
}

/// Starts the thread that owns the session and answers the shell requests from `requests`;
/// returns the flags an interrupt raises and the message types the test hook makes panic.
fn start_cells(outbox: Outbox, requests: mpsc::Receiver<Incoming>) -> Result<(Interrupts, Vec<String>), KernelError> {
    let session = Session::new();
    let interrupts = Interrupts { session: session.interrupt_flag(), cell: Arc::new(AtomicBool::new(false)) };
    let debug = debug_panics();
    if !debug.is_empty() {
        log(&format!("MNISTLAB_DEBUG_PANIC: the handlers of {} will panic (a test hook)", debug.join(", ")));
    }
    let executor =
        Executor { session, outbox, interrupts: interrupts.clone(), execution_count: 0, debug_panics: debug.clone() };
    std::thread::Builder::new()
        .name("mnistlab-cells".into())
        .spawn(move || executor.run(requests))
        .map_err(KernelError::Thread)?;
    Ok((interrupts, debug))
}

/// The control socket, served on the async runtime: it answers `kernel_info`, `interrupt`
/// and `shutdown` requests at once, while a cell runs on its own thread.
struct Control {
    socket: RouterSocket,
    signer: Signer,
    outbox: Outbox,
    interrupts: Interrupts,
    /// Message types whose handlers panic (`MNISTLAB_DEBUG_PANIC`, a test hook).
    debug_panics: Vec<String>,
}

impl Control {
    /// Answers control requests until a `shutdown_request` ends the process.
    async fn serve(mut self) -> Result<(), KernelError> {
        loop {
            let frames = match self.socket.recv().await {
                Ok(frames) => from_zmq(frames),
                Err(e) => {
                    log(&format!("control: {e}"));
                    continue;
                }
            };
            match accept(frames, &self.signer, "control") {
                Some(Incoming::Request(request)) => self.handle(&request).await,
                Some(Incoming::Invalid(request, why)) => self.answer_invalid(&request, why).await,
                None => {}
            }
        }
    }

    /// Answers a request whose content could not be read with an `InvalidRequest` error.
    async fn answer_invalid(&mut self, request: &Message, why: String) {
        self.outbox.status(request, "busy");
        if let Some(reply_type) = reply_type(request.msg_type()) {
            self.send(request, &reply_type, error_content(&invalid_error(why))).await;
        }
        self.outbox.status(request, "idle");
    }

    /// Answers one request between `busy` and `idle`; after a `shutdown_reply`, shuts down.
    async fn handle(&mut self, request: &Message) {
        self.outbox.status(request, "busy");
        let answer = self.answer(request);
        if let Some((msg_type, content, _)) = &answer {
            self.send(request, msg_type, content.clone()).await;
        }
        self.outbox.status(request, "idle");
        if answer.is_some_and(|(_, _, exit)| exit) {
            self.shut_down().await;
        }
    }

    /// The reply to `request` (type, content, whether the kernel then exits); `None` for a
    /// request the control socket does not answer. A handler that panics answers an
    /// `InternalError`.
    fn answer(&self, request: &Message) -> Option<(String, Value, bool)> {
        let handled = guard::catch(|| {
            forced_panic(&self.debug_panics, request.msg_type());
            match request.msg_type() {
                "kernel_info_request" => Some(("kernel_info_reply".to_string(), replies::kernel_info(), false)),
                "interrupt_request" => {
                    self.interrupts.raise();
                    Some(("interrupt_reply".to_string(), json!({"status": "ok"}), false))
                }
                "shutdown_request" => {
                    let restart = request.content.get("restart").and_then(Value::as_bool).unwrap_or(false);
                    Some(("shutdown_reply".to_string(), json!({"status": "ok", "restart": restart}), true))
                }
                _ => None,
            }
        });
        match handled {
            Ok(Some(answer)) => Some(answer),
            Ok(None) => {
                log(&format!("control: ignored a {}", request.msg_type()));
                None
            }
            Err(message) => {
                log(&format!("control: the {} handler panicked: {message}", request.msg_type()));
                let content = error_content(&internal_error(request.msg_type(), &message));
                reply_type(request.msg_type()).map(|reply| (reply, content, false))
            }
        }
    }

    /// Sends the reply `msg_type` to `request` on the control socket.
    async fn send(&mut self, request: &Message, msg_type: &str, content: Value) {
        let reply = Message::child(request, msg_type, content, &self.outbox.session);
        if let Err(e) = self.socket.send(to_zmq(reply.to_frames(&self.signer))).await {
            log(&format!("control: cannot send {msg_type}: {e}"));
        }
    }

    /// Stops the running cell and exits once the last replies have had time to go out.
    async fn shut_down(&self) {
        self.interrupts.raise();
        tokio::time::sleep(FLUSH_BEFORE_EXIT).await;
        std::process::exit(0);
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
        let ename = error.kind_name().to_string();
        let traceback = error.to_string().lines().map(str::to_string).collect();
        match error {
            RunError::Parse { error, .. } => CellError {
                ename,
                evalue: format!("line {}:{}: expected {}", error.line, error.col, error.expected),
                traceback,
            },
            RunError::Statement { error, .. } | RunError::Internal { error, .. } => {
                CellError { ename, evalue: error.message.clone(), traceback }
            }
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
    /// Message types whose handlers panic (`MNISTLAB_DEBUG_PANIC`, a test hook).
    debug_panics: Vec<String>,
}

impl Executor {
    fn run(mut self, requests: mpsc::Receiver<Incoming>) {
        while let Ok(incoming) = requests.recv() {
            let (request, invalid) = match incoming {
                Incoming::Request(request) => (request, None),
                Incoming::Invalid(request, why) => (request, Some(why)),
            };
            self.outbox.status(&request, "busy");
            let exit = match invalid {
                Some(why) => {
                    self.answer_invalid(&request, why);
                    false
                }
                None => match guard::catch(|| self.handle(&request)) {
                    Ok(exit) => exit,
                    Err(message) => {
                        self.answer_panic(&request, &message);
                        false
                    }
                },
            };
            self.outbox.status(&request, "idle");
            if exit {
                std::thread::sleep(FLUSH_BEFORE_EXIT);
                std::process::exit(0);
            }
        }
    }

    /// Answers a request whose content could not be read.
    fn answer_invalid(&mut self, request: &Message, why: String) {
        let error = invalid_error(why);
        if request.msg_type() == "execute_request" {
            self.reply_error(request, &error, false);
        } else if let Some(reply) = reply_type(request.msg_type()) {
            self.outbox.reply(request, &reply, error_content(&error));
        }
    }

    /// Answers a request whose handler panicked: its reply with an `InternalError` (for an
    /// execute, also on IOPub), so the client is not left waiting.
    fn answer_panic(&mut self, request: &Message, message: &str) {
        let msg_type = request.msg_type();
        log(&format!("shell: the {msg_type} handler panicked: {message}"));
        let error = internal_error(msg_type, message);
        if msg_type == "execute_request" {
            self.interrupts.cell.store(false, Ordering::SeqCst);
            let silent = request.content.get("silent").and_then(Value::as_bool).unwrap_or(false);
            self.reply_error(request, &error, silent);
        } else if let Some(reply) = reply_type(msg_type) {
            self.outbox.reply(request, &reply, error_content(&error));
        }
    }

    /// Answers one shell request; true when the kernel should exit.
    fn handle(&mut self, request: &Message) -> bool {
        forced_panic(&self.debug_panics, request.msg_type());
        let content = &request.content;
        let reply = |msg_type: &str, body: Value| self.outbox.reply(request, msg_type, body);
        match request.msg_type() {
            "kernel_info_request" => reply("kernel_info_reply", replies::kernel_info()),
            "execute_request" => self.execute(request),
            "complete_request" => reply("complete_reply", replies::complete_request(content)),
            "is_complete_request" => reply("is_complete_reply", replies::is_complete_request(content)),
            "inspect_request" => reply("inspect_reply", replies::inspect_request(content)),
            "history_request" => reply("history_reply", json!({"status": "ok", "history": []})),
            "comm_info_request" => reply("comm_info_reply", json!({"status": "ok", "comms": {}})),
            "shutdown_request" => {
                let restart = content.get("restart").and_then(Value::as_bool).unwrap_or(false);
                reply("shutdown_reply", json!({"status": "ok", "restart": restart}));
                return true;
            }
            "comm_open" | "comm_msg" | "comm_close" => {}
            other => log(&format!("shell: ignored a {other}")),
        }
        false
    }

    /// Sends an execute request's error: on IOPub (unless silent) and as its `execute_reply`.
    fn reply_error(&self, request: &Message, e: &CellError, silent: bool) {
        let error = json!({"ename": e.ename, "evalue": e.evalue, "traceback": e.traceback});
        if !silent {
            self.outbox.publish(request, "error", error.clone());
        }
        let mut body =
            json!({"status": "error", "execution_count": self.execution_count, "user_expressions": {}, "payload": []});
        if let (Some(body), Some(error)) = (body.as_object_mut(), error.as_object()) {
            body.extend(error.clone());
        }
        self.outbox.reply(request, "execute_reply", body);
    }

    fn execute(&mut self, request: &Message) {
        let content = &request.content;
        let code = match replies::code_of(content) {
            Ok(code) => code,
            Err(e) => return self.reply_error(request, &invalid_error(e.to_string()), false),
        };
        let silent = content.get("silent").and_then(Value::as_bool).unwrap_or(false);
        let store_history = !silent && content.get("store_history").and_then(Value::as_bool).unwrap_or(true);
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
            for (msg_type, body) in outputs.messages(event) {
                outbox.publish(request, msg_type, body);
            }
        });
        // The progress display ends on the last state reported (a `fit` stopped between two
        // throttled updates).
        if let Some((msg_type, body)) = outputs.flush() {
            if !silent {
                self.outbox.publish(request, msg_type, body);
            }
        }
        self.interrupts.cell.store(false, Ordering::SeqCst);
        match result {
            Ok(()) => self.outbox.reply(
                request,
                "execute_reply",
                json!({"status": "ok", "execution_count": count, "user_expressions": {}, "payload": []}),
            ),
            Err(e) => self.reply_error(request, &e, silent),
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
        assert_eq!(error.ename, "UsageError", "info before load: the statement cannot run yet");
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

    fn request(msg_type: &str, content: Value) -> Message {
        Message {
            identities: vec![b"client".to_vec()],
            header: json!({"msg_id": format!("id-{msg_type}"), "msg_type": msg_type, "session": "s"}),
            parent_header: json!({}),
            metadata: json!({}),
            content,
            buffers: Vec::new(),
        }
    }

    /// Messages as (msg_type, content).
    type Sent = Vec<(String, Value)>;

    /// Runs an executor (with the test hook naming `panics`) over `requests`; returns the
    /// shell replies and the IOPub messages.
    fn serve(panics: &[&str], requests: Vec<Message>) -> (Sent, Sent) {
        serve_incoming(panics, requests.into_iter().map(Incoming::Request).collect())
    }

    fn serve_incoming(panics: &[&str], requests: Vec<Incoming>) -> (Sent, Sent) {
        let (shell_tx, mut shell_rx) = unbounded_channel();
        let (iopub_tx, mut iopub_rx) = unbounded_channel();
        let session = Session::new();
        let interrupts = Interrupts { session: session.interrupt_flag(), cell: Arc::new(AtomicBool::new(false)) };
        let executor = Executor {
            session,
            outbox: Outbox { session: "k".into(), shell: shell_tx, iopub: iopub_tx },
            interrupts,
            execution_count: 0,
            debug_panics: panics.iter().map(|p| p.to_string()).collect(),
        };
        let (tx, rx) = mpsc::channel();
        for r in requests {
            tx.send(r).unwrap();
        }
        drop(tx);
        executor.run(rx);
        let drain = |rx: &mut UnboundedReceiver<Message>| {
            let mut out = Vec::new();
            while let Ok(m) = rx.try_recv() {
                out.push((m.msg_type().to_string(), m.content));
            }
            out
        };
        (drain(&mut shell_rx), drain(&mut iopub_rx))
    }

    #[test]
    fn a_panicking_handler_still_replies_and_the_next_request_is_served() {
        let (replies, iopub) = serve(
            &["complete_request", "inspect_request"],
            vec![
                request("complete_request", json!({"code": "lo", "cursor_pos": 2})),
                request("inspect_request", json!({"code": "lo", "cursor_pos": 2})),
                request("execute_request", json!({"code": "print \"ok\""})),
                request("is_complete_request", json!({"code": "info"})),
            ],
        );
        let types: Vec<&str> = replies.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, vec!["complete_reply", "inspect_reply", "execute_reply", "is_complete_reply"]);
        for (_, content) in &replies[..2] {
            assert_eq!(content["status"], "error");
            assert_eq!(content["ename"], "InternalError");
            assert!(content["evalue"].as_str().unwrap().contains("MNISTLAB_DEBUG_PANIC"), "{content}");
            assert!(content["traceback"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("report")));
        }
        assert_eq!(replies[2].1["status"], "ok");
        assert_eq!(replies[3].1["status"], "complete");
        let statuses: Vec<&str> =
            iopub.iter().filter(|(t, _)| t == "status").map(|(_, c)| c["execution_state"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["busy", "idle"].repeat(4), "every request ends idle");
        assert!(iopub.iter().any(|(t, c)| t == "stream" && c["text"] == "ok\n"));
    }

    #[test]
    fn a_panicking_execute_gets_an_internal_error() {
        let (replies, iopub) = serve(
            &["execute_request"],
            vec![
                request("execute_request", json!({"code": "print \"a\""})),
                request("complete_request", json!({"code": "lo"})),
                request("execute_request", json!({"code": "print \"b\"", "silent": true})),
            ],
        );
        assert_eq!(replies.len(), 3);
        for i in [0, 2] {
            assert_eq!(replies[i].0, "execute_reply");
            assert_eq!(replies[i].1["status"], "error");
            assert_eq!(replies[i].1["ename"], "InternalError");
            assert!(replies[i].1["execution_count"].is_u64());
        }
        assert_eq!(replies[1].1["matches"], json!(["load", "log", "loss"]));
        let errors = iopub.iter().filter(|(t, _)| t == "error").count();
        assert_eq!(errors, 1, "the silent one publishes nothing");
    }

    #[test]
    fn malformed_requests_get_error_replies() {
        let (replies, iopub) = serve(
            &[],
            vec![
                request("execute_request", json!("print \"x\"")),
                request("execute_request", json!({"code": 7})),
                request("complete_request", json!({"code": ["lo"], "cursor_pos": 1})),
                request("inspect_request", json!({"code": "info", "cursor_pos": "1"})),
                request("is_complete_request", json!(null)),
                request("execute_request", json!({"code": "print \"ok\"", "silent": "no", "store_history": 3})),
            ],
        );
        let statuses: Vec<&str> = replies.iter().map(|(_, c)| c["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, vec!["error", "error", "error", "error", "unknown", "ok"]);
        for (_, c) in &replies[..4] {
            assert_eq!(c["ename"], "InvalidRequest", "{c}");
        }
        assert!(replies[1].1["evalue"].as_str().unwrap().contains("`code` must be a string"));
        assert!(iopub.iter().any(|(t, c)| t == "stream" && c["text"] == "ok\n"));
    }

    #[test]
    fn accept_drops_messages_without_a_type() {
        let signer = Signer::new("k");
        let mut message = request("execute_request", json!({}));
        message.header = json!({"msg_id": "1"});
        assert!(accept(message.to_frames(&signer), &signer, "shell").is_none());
        message.header = json!([1, 2]);
        assert!(accept(message.to_frames(&signer), &signer, "shell").is_none());
        message.header = json!({"msg_type": 5});
        assert!(accept(message.to_frames(&signer), &signer, "shell").is_none());
        let mut frames = request("execute_request", json!({})).to_frames(&Signer::new(""));
        frames[3] = b"{not json".to_vec();
        assert!(accept(frames, &Signer::new(""), "shell").is_none());
        let ok = accept(request("kernel_info_request", json!({})).to_frames(&signer), &signer, "shell");
        assert!(matches!(ok, Some(Incoming::Request(m)) if m.msg_type() == "kernel_info_request"));
    }

    #[test]
    fn requests_whose_content_is_not_json_get_an_error_reply() {
        let signer = Signer::new("k");
        let resign = |mut frames: Vec<Vec<u8>>, signer: &Signer| {
            let parts: Vec<&[u8]> = frames[3..7].iter().map(Vec::as_slice).collect();
            frames[2] = signer.sign(&parts).into_bytes();
            frames
        };
        let mut frames = request("execute_request", json!({})).to_frames(&signer);
        frames[6] = b"{\"code\": \"\\ud800\"".to_vec();
        let Some(Incoming::Invalid(execute, why)) = accept(resign(frames.clone(), &signer), &signer, "shell") else {
            panic!("not an invalid request")
        };
        assert!(why.contains("content"), "{why}");
        // Unsigned, it is dropped.
        assert!(accept(frames, &signer, "shell").is_none());
        let mut frames = request("complete_request", json!({})).to_frames(&signer);
        frames[6] = vec![0xff, 0xfe];
        let Some(complete) = accept(resign(frames, &signer), &signer, "shell") else { panic!("dropped") };
        let (replies, iopub) = serve_incoming(
            &[],
            vec![
                Incoming::Invalid(execute, why),
                complete,
                Incoming::Request(request("execute_request", json!({"code": "print \"ok\""}))),
            ],
        );
        let statuses: Vec<(&str, &str)> =
            replies.iter().map(|(t, c)| (t.as_str(), c["status"].as_str().unwrap())).collect();
        assert_eq!(statuses, vec![("execute_reply", "error"), ("complete_reply", "error"), ("execute_reply", "ok")]);
        assert_eq!(replies[0].1["ename"], "InvalidRequest");
        assert_eq!(replies[1].1["ename"], "InvalidRequest");
        assert!(iopub.iter().any(|(t, c)| t == "stream" && c["text"] == "ok\n"));
    }

    #[test]
    fn reply_types() {
        assert_eq!(reply_type("complete_request").as_deref(), Some("complete_reply"));
        assert_eq!(reply_type("comm_msg"), None);
        assert!(internal_error("complete_request", "boom").evalue.contains("boom"));
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
