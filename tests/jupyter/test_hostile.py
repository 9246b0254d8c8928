"""Hostile input to the mnistlab kernel (issue 13): nothing a client sends may crash it, hang
it or leave it silent. After each attack the kernel must still run the next cell."""

import json
import os
import re
import time

import pytest
import zmq
from jupyter_client import KernelManager
from jupyter_client.session import Session

from test_client import run_cell

# Unicode spaces (the parser takes them for separators, except the zero-width one, which is no
# whitespace), and combining marks.
SPACES = ["\u3000", "\u00a0", "\u2003", "\u205f", "\u200b", "\u1680"]
COMBINING = ["\u0301", "\u0308\u0323", "\u20dd"]


def start(tmp_path, debug_panic=None):
    log = open(tmp_path / "kernel.log", "w")
    env = dict(os.environ)
    env.pop("MNISTLAB_DEBUG_PANIC", None)
    if debug_panic:
        env["MNISTLAB_DEBUG_PANIC"] = debug_panic
    km = KernelManager(kernel_name="mnistlab")
    km.start_kernel(cwd=str(tmp_path), stderr=log, env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    return km, kc, log


@pytest.fixture
def kernel(tmp_path):
    km, kc, log = start(tmp_path)
    yield km, kc, tmp_path / "kernel.log"
    stop(km, kc, log)


def stop(km, kc, log):
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    log.close()


def request(kc, msg_type, content, timeout=30):
    """Sends a shell request with exactly this content; returns its reply, after checking the
    request's busy/idle statuses."""
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg)
    reply = kc.get_shell_msg(timeout=timeout)
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["msg_type"] == msg_type.replace("_request", "_reply")
    wait_idle(kc, msg["header"]["msg_id"])
    return reply["content"]


def wait_idle(kc, msg_id):
    """The request's IOPub messages up to its idle status."""
    messages = []
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
        messages.append(msg)


def assert_still_works(kc, text="ok"):
    reply, messages = run_cell(kc, f'print "{text}"')
    assert reply["content"]["status"] == "ok", reply["content"]
    assert [m["content"]["text"] for m in messages if m["msg_type"] == "stream"] == [f"{text}\n"]


def test_complete_with_unicode_spaces_and_combining_marks(kernel):
    _, kc, _ = kernel
    # The panic of issue 13: an ideographic space inside the line (a separator, as for the parser).
    reply = request(kc, "complete_request", {"code": "load\u3000mni", "cursor_pos": 8})
    assert reply["status"] == "ok"
    assert reply["matches"] == ["mnist"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (5, 8)
    reply = request(kc, "complete_request", {"code": "show\u3000samples\u00a04\u2003", "cursor_pos": 15})
    assert reply["matches"] == ["class", "test", "train", "val"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (15, 15)
    reply = request(kc, "complete_request", {"code": "load mn\u200b", "cursor_pos": 8})
    assert reply["matches"] == []  # a zero-width space is no space: `mn\u200b` completes to nothing
    # Leading full-width spaces are indentation: the keyword completes, positions in code points.
    reply = request(kc, "complete_request", {"code": "\u3000\u3000lo", "cursor_pos": 4})
    assert reply["matches"] == ["load", "log", "loss"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (2, 4)
    code = "print \"e\u0301\u3000\"\nload mnist f"
    reply = request(kc, "complete_request", {"code": code, "cursor_pos": len(code)})
    assert reply["matches"] == ["from"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (len(code) - 1, len(code))
    # Every cursor position in lines mixing them.
    for space in SPACES:
        for mark in COMBINING:
            code = f"lo{mark}ad{space}mn{mark}ist {space}fr{mark}om\n{space}sho{mark}w samples"
            for pos in range(len(code) + 1):
                reply = request(kc, "complete_request", {"code": code, "cursor_pos": pos})
                assert reply["status"] == "ok", (code, pos, reply)
                assert reply["cursor_end"] == pos
                assert 0 <= reply["cursor_start"] <= pos
    assert_still_works(kc)


def test_inspect_and_is_complete_with_unicode(kernel):
    _, kc, _ = kernel
    for space in SPACES:
        for mark in COMBINING:
            code = f"{space}split{mark}{space}70/15/15\nload{space}mnist{mark}"
            for pos in range(len(code) + 1):
                reply = request(kc, "inspect_request", {"code": code, "cursor_pos": pos, "detail_level": 0})
                assert reply["status"] == "ok", (code, pos, reply)
            reply = request(kc, "is_complete_request", {"code": code})
            assert reply["status"] in ("complete", "invalid", "incomplete")
    reply = request(kc, "inspect_request", {"code": "load\u3000mnist", "cursor_pos": 2, "detail_level": 0})
    assert reply["found"] is True and reply["data"]["text/plain"].startswith("load")
    assert request(kc, "is_complete_request", {"code": "\u3000load mnist\u3000"})["status"] == "complete"
    assert_still_works(kc)


@pytest.mark.parametrize("msg_type", ["complete_request", "inspect_request"])
def test_out_of_range_negative_and_missing_cursor(kernel, msg_type):
    _, kc, _ = kernel
    code = "lo\u3000ad mnist"
    n = len(code)
    for cursor, expected_end in [(n + 1, n), (10**12, n), (2**70, n), (-1, 0), (-(2**63), 0), (2.5, 2), (None, n)]:
        content = {"code": code, "cursor_pos": cursor, "detail_level": 0}
        reply = request(kc, msg_type, content)
        assert reply["status"] == "ok", (cursor, reply)
        if msg_type == "complete_request":
            assert reply["cursor_end"] == expected_end, (cursor, reply)
    missing = request(kc, msg_type, {"code": code, "detail_level": 0})
    assert missing["status"] == "ok"
    if msg_type == "complete_request":
        assert missing["cursor_end"] == n
    for bad in ["3", [3], {"at": 3}, True]:
        reply = request(kc, msg_type, {"code": code, "cursor_pos": bad, "detail_level": 0})
        assert reply["status"] == "error" and reply["ename"] == "InvalidRequest", reply
        assert "cursor_pos" in reply["evalue"]
    for bad_code in [None, 42, ["load"], {"code": "load"}]:
        reply = request(kc, msg_type, {"code": bad_code, "cursor_pos": 0, "detail_level": 0})
        assert reply["status"] == "error" and reply["ename"] == "InvalidRequest", reply
        assert "code" in reply["evalue"]
    assert_still_works(kc)


def test_a_megabyte_line(kernel):
    _, kc, _ = kernel
    text = "x" * (1 << 20)
    line = f'print "{text}"'
    started = time.monotonic()
    reply = request(kc, "complete_request", {"code": line, "cursor_pos": len(line)})
    assert reply["status"] == "ok" and reply["cursor_end"] == len(line)
    reply = request(kc, "complete_request", {"code": line + "\nlo", "cursor_pos": len(line) + 3})
    assert reply["matches"] == ["load", "log", "loss"]
    reply = request(kc, "inspect_request", {"code": line, "cursor_pos": len(line) // 2, "detail_level": 0})
    assert reply["status"] == "ok" and reply["found"] is True
    assert request(kc, "is_complete_request", {"code": line})["status"] == "complete"
    words = "model " + "conv32 " * 150_000
    reply = request(kc, "complete_request", {"code": words, "cursor_pos": len(words)})
    assert reply["status"] == "ok"
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"completion and inspection of a megabyte took {elapsed:.1f} s"
    # And run it: the text comes back whole.
    reply, messages = run_cell(kc, line, timeout=120)
    assert reply["content"]["status"] == "ok"
    streamed = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert streamed == text + "\n"
    # A megabyte that does not parse is a parse error, not a hang.
    reply, _ = run_cell(kc, "lod " + text, timeout=120)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "ParseError"
    assert_still_works(kc)


def test_statement_that_would_exhaust_memory(kernel):
    _, kc, _ = kernel
    reply, _ = run_cell(kc, "load mnist", timeout=300)
    assert reply["content"]["status"] == "ok", reply["content"]
    # A width beyond the parser's range is a parse error naming the range.
    reply, messages = run_cell(kc, "model dense1000000000", timeout=120)
    content = reply["content"]
    assert content["status"] == "error", content
    assert content["ename"] == "ParseError" and "1 to" in content["evalue"], content["evalue"]
    assert_still_works(kc)
    # Widths within range whose weights would not fit: refused by the memory budget.
    for model in ["model dense1000000 dense1000000", "model conv4096 same dense1000000"]:
        reply, messages = run_cell(kc, model, timeout=120)
        content = reply["content"]
        assert content["status"] == "error", content
        assert "memory" in content["evalue"].lower(), content["evalue"]
        assert any(m["msg_type"] == "error" for m in messages)
        assert_still_works(kc)
    # The session is intact: a model that fits is built after the refused one.
    reply, _ = run_cell(kc, "model dense16\nsummary")
    assert reply["content"]["status"] == "ok", reply["content"]


def with_debug_panic(tmp_path, value):
    km, kc, log = start(tmp_path, debug_panic=value)
    return km, kc, log


def test_forced_panic_in_a_statement(tmp_path):
    """MNISTLAB_DEBUG_PANIC=info makes the session's `info` panic; the cell gets an
    InternalError and the session goes on."""
    km, kc, log = with_debug_panic(tmp_path, "info")
    try:
        reply, messages = run_cell(kc, 'print "before"\ninfo\nprint "not reached"')
        content = reply["content"]
        assert content["status"] == "error" and content["ename"] == "InternalError", content
        texts = [m["content"]["text"] for m in messages if m["msg_type"] == "stream"]
        assert texts == ["before\n"]
        errors = [m for m in messages if m["msg_type"] == "error"]
        assert len(errors) == 1 and errors[0]["content"]["ename"] == "InternalError"
        assert_still_works(kc)
        # The panicking statement still panics, and is still caught.
        reply, _ = run_cell(kc, "info")
        assert reply["content"]["ename"] == "InternalError"
        assert_still_works(kc, "again")
    finally:
        stop(km, kc, log)


def test_forced_panic_in_the_execute_handler(tmp_path):
    """MNISTLAB_DEBUG_PANIC=execute_request makes the kernel's execute handler itself panic:
    every execute gets an InternalError reply and an error on IOPub, and the other requests
    are still served."""
    km, kc, log = with_debug_panic(tmp_path, "execute_request")
    try:
        for _ in range(3):
            reply, messages = run_cell(kc, 'print "x"')
            content = reply["content"]
            assert content["status"] == "error" and content["ename"] == "InternalError", content
            assert "report" in " ".join(content["traceback"])
            assert [m["content"]["ename"] for m in messages if m["msg_type"] == "error"] == ["InternalError"]
            reply = request(kc, "complete_request", {"code": "lo", "cursor_pos": 2})
            assert reply["matches"] == ["load", "log", "loss"]
            assert request(kc, "kernel_info_request", {})["status"] == "ok"
        assert "execute_request handler panicked" in (tmp_path / "kernel.log").read_text()
    finally:
        stop(km, kc, log)


def test_forced_panic_in_complete_and_inspect(tmp_path):
    km, kc, log = with_debug_panic(tmp_path, "complete_request,inspect_request")
    try:
        for _ in range(2):
            for msg_type in ["complete_request", "inspect_request"]:
                reply = request(kc, msg_type, {"code": "load\u3000mni", "cursor_pos": 8, "detail_level": 0})
                assert reply["status"] == "error", reply
                assert reply["ename"] == "InternalError"
                assert msg_type in reply["evalue"]
                assert isinstance(reply["traceback"], list) and reply["traceback"]
            assert_still_works(kc)
        assert request(kc, "is_complete_request", {"code": "info"})["status"] == "complete"
    finally:
        stop(km, kc, log)


def raw_shell(km):
    info = km.get_connection_info()
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(f"tcp://{info['ip']}:{info['shell_port']}")
    return socket, Session(key=info["key"], username="tester")


def signed(session, parts):
    """The frames of a message with these four (raw) parts, correctly signed."""
    parts = [p if isinstance(p, bytes) else json.dumps(p).encode() for p in parts]
    return [b"<IDS|MSG>", session.sign(parts)] + parts


def header(session, msg_type, **extra):
    h = session.msg_header(msg_type)
    h.update(extra)
    h["date"] = str(h["date"])
    return h


def answers_kernel_info(socket, session):
    session.send(socket, "kernel_info_request", content={})
    assert socket.poll(10000) != 0, "the kernel stopped serving after a malformed message"
    _, reply = session.recv(socket)
    assert reply["msg_type"] == "kernel_info_reply"


def test_malformed_messages(kernel):
    km, kc, log = kernel
    socket, session = raw_shell(km)
    try:
        dropped = [
            signed(session, [b"{not json", {}, {}, {}]),  # bad JSON in the header frame
            signed(session, [{}, {}, {}, {"code": 'print "no header"'}]),  # header without fields
            signed(session, [{"msg_type": 7}, {}, {}, {"code": 'print "x"'}]),  # msg_type not a string
            signed(session, [[1, 2], {}, {}, {}]),  # header not an object
            [b"<IDS|MSG>", b"", b"{}"],  # frames missing
            [b"no delimiter at all"],
        ]
        for frames in dropped:
            socket.send_multipart(frames)
            assert socket.poll(1000) == 0, f"a reply to a malformed message: {frames[:3]}"
            answers_kernel_info(socket, session)
        # A signed request whose content is not JSON (not UTF-8, a lone surrogate) gets an error
        # reply rather than leaving its client waiting.
        for msg_type in ["execute_request", "complete_request", "inspect_request"]:
            for content in [b"\xff\xfe", b'{"code": "\\ud800", "cursor_pos": 0}']:
                socket.send_multipart(signed(session, [header(session, msg_type), {}, {}, content]))
                assert socket.poll(10000) != 0, f"no reply to a {msg_type} with content {content!r}"
                _, reply = session.recv(socket)
                assert reply["msg_type"] == msg_type.replace("_request", "_reply")
                assert reply["content"]["status"] == "error"
                assert reply["content"]["ename"] == "InvalidRequest", reply["content"]
        # Requests with content of the wrong shape get an error reply.
        for content in [[1, 2], "print \"x\"", {"code": 5}, {"silent": False}]:
            socket.send_multipart(signed(session, [header(session, "execute_request"), {}, {}, content]))
            assert socket.poll(10000) != 0, f"no reply to an execute with content {content!r}"
            _, reply = session.recv(socket)
            assert reply["msg_type"] == "execute_reply"
            assert reply["content"]["status"] == "error"
            assert reply["content"]["ename"] == "InvalidRequest", reply["content"]
        # A header with odd extra fields and a parent header that is not an object still works.
        socket.send_multipart(signed(session, [header(session, "kernel_info_request", extra=[1]), "x", 5, {}]))
        assert socket.poll(10000) != 0
        _, reply = session.recv(socket)
        assert reply["msg_type"] == "kernel_info_reply"
    finally:
        socket.close()
    assert_still_works(kc)
    text = log.read_text()
    assert "dropped a message on shell" in text
    assert "no msg_type" in text
    assert "panicked" not in text
