"""The mnistlab kernel driven through jupyter_client: interrupts, signatures, memory,
the kernelspec, and the lesson notebooks run end to end."""

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import zmq
from jupyter_client import KernelManager
from jupyter_client.session import Session
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kernel(tmp_path):
    """A fresh kernel (its stderr in tmp_path/kernel.log) and a started client."""
    log = open(tmp_path / "kernel.log", "w")
    km = KernelManager(kernel_name="mnistlab")
    km.start_kernel(cwd=str(tmp_path), stderr=log)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    yield km, kc, tmp_path / "kernel.log"
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    log.close()


def run_cell(kc, code, timeout=60):
    """Executes code; returns (reply, the request's iopub messages other than statuses)."""
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=timeout)
    assert reply["parent_header"]["msg_id"] == msg_id
    messages = []
    while True:
        msg = kc.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "idle":
                return reply, messages
            continue
        messages.append(msg)


def test_kernelspec_is_listed():
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    spec = json.loads(out)["kernelspecs"]["mnistlab"]
    assert spec["spec"]["language"] == "mnistlab"
    assert spec["spec"]["interrupt_mode"] == "message"
    assert Path(spec["spec"]["argv"][0]).is_absolute()
    assert (Path(spec["resource_dir"]) / "logo-64x64.png").is_file()


def test_interrupt_during_fit(kernel):
    km, kc, _ = kernel
    # 50 epochs of 60,000 images would run for minutes.
    msg_id = kc.execute("load mnist\nnormalize\nmodel seed-small\nfit 50\nprint \"not reached\"")
    displays = []
    updates = []
    deadline = time.monotonic() + 120
    while len(updates) < 3:
        assert time.monotonic() < deadline, "fit showed no progress"
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "display_data" and "display_id" in msg["content"].get("transient", {}):
            displays.append(msg)
        if msg["msg_type"] == "update_display_data":
            updates.append(msg)
    assert len(displays) == 1
    display_id = displays[0]["content"]["transient"]["display_id"]
    assert all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    assert "epoch 1/50" in updates[-1]["content"]["data"]["text/plain"]
    # As Keras shows it: time taken and left, images per second, running loss and accuracy.
    shown = updates[-1]["content"]["data"]["text/plain"]
    assert all(part in shown for part in ("ETA", "images/s", "loss: ", "accuracy: ")), shown
    assert "<progress" in updates[-1]["content"]["data"]["text/html"]

    started = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    elapsed = time.monotonic() - started
    assert reply["parent_header"]["msg_id"] == msg_id
    print(f"fit stopped {elapsed:.3f} s after the interrupt")
    assert elapsed < 2.0, f"the fit took {elapsed:.2f} s to stop"
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "Interrupted"
    # The bar ends on the last batch reported, not on an older, throttled one: `fit` reports
    # every steps/40 batches, so it is within one report of where the fit says it stopped.
    texts, last = [], updates[-1]
    while True:
        msg = kc.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        if msg["msg_type"] == "update_display_data":
            last = msg
        if msg["msg_type"] == "stream":
            texts.append(msg["content"]["text"])
    note = re.search(r"interrupted during epoch (\d+) after (\d+) of (\d+) batches", "".join(texts))
    assert note, texts
    epoch, stopped, steps = (int(g) for g in note.groups())
    shown = re.search(r"epoch (\d+)/50 \[[^]]*\] (\d+)/(\d+)", last["content"]["data"]["text/plain"])
    assert shown, last["content"]["data"]["text/plain"]
    assert (int(shown.group(1)), int(shown.group(3))) == (epoch, steps)
    every = max(steps // 40, 1)
    assert stopped - every < int(shown.group(2)) <= stopped, (last["content"]["data"]["text/plain"], texts)

    reply, messages = run_cell(kc, 'print "next"')
    assert reply["content"]["status"] == "ok"
    assert [m["content"]["text"] for m in messages if m["msg_type"] == "stream"] == ["next\n"]


def test_wrong_signature_is_dropped(kernel):
    km, kc, log = kernel
    info = km.get_connection_info()
    context = zmq.Context.instance()
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(f"tcp://{info['ip']}:{info['shell_port']}")
    try:
        forged = Session(key=b"not the key", username="forger")
        forged.send(socket, "execute_request", content={"code": 'print "forged"', "silent": False})
        assert socket.poll(2000) == 0, "the kernel answered a message with a wrong signature"
        genuine = Session(key=info["key"], username="tester")
        genuine.send(socket, "kernel_info_request", content={})
        assert socket.poll(10000) != 0, "the kernel stopped serving after a bad message"
        _, reply = genuine.recv(socket)
        assert reply["msg_type"] == "kernel_info_reply"
    finally:
        socket.close()
    reply, messages = run_cell(kc, 'print "still here"')
    assert reply["content"]["status"] == "ok"
    assert not any("forged" in m["content"].get("text", "") for m in messages)
    assert "wrong HMAC signature" in log.read_text()


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_500_executes_keep_memory_flat(kernel):
    km, kc, _ = kernel
    pid = km.provisioner.process.pid
    code = 'print "hello"\nhelp normalize\nseed 3'
    for _ in range(50):
        run_cell(kc, code)
    before = rss_kib(pid)
    for _ in range(500):
        reply, messages = run_cell(kc, code)
        assert reply["content"]["status"] == "ok"
        assert len(messages) == 4  # execute_input and three streams
    after = rss_kib(pid)
    print(f"kernel RSS {before} KiB -> {after} KiB after 500 executes")
    assert after <= before * 1.10, f"RSS grew from {before} to {after} KiB"


def mnistlab_notebooks():
    """The lessons written for this kernel (06-rust.ipynb is evcxr's: scripts/test-evcxr runs it)."""
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    return [p for p in paths if nbformat.read(p, as_version=4).metadata.get("kernelspec", {}).get("name") == "mnistlab"]


@pytest.mark.parametrize("notebook", mnistlab_notebooks(), ids=lambda p: p.name)
def test_notebook_runs(notebook, tmp_path):
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, kernel_name="mnistlab", timeout=600, resources={"metadata": {"path": str(tmp_path)}})
    # Raises CellExecutionError on the first failing cell, except cells tagged
    # `raises-exception`, which show an error on purpose and must show one.
    client.execute()
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs for cell in code), f"{notebook.name}: a cell produced no output"
    for cell in code:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        expected = "raises-exception" in cell.metadata.get("tags", [])
        assert bool(errors) == expected, f"{notebook.name}: {cell.source!r}"
    images = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert images, f"{notebook.name} shows no picture"
