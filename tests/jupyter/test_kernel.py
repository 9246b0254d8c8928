"""The mnistlab kernel against jupyter_kernel_test's protocol checks.

Skipped base tests (they have nothing to check in this kernel):
- test_execute_result: statements print, display tables and images; none has a value, so
  the kernel sends no execute_result.
- test_pager: no statement pages text (help prints it as a stream).
- test_history: the kernel answers history_request with an empty list (the session keeps
  its own statement history for `:save`); the base test needs code_execute_result.
- test_clear_output: no statement clears output (progress updates one display instead).
(IopubWelcomeTests is not used: iopub is a PUB socket, not an XPUB that greets subscribers.)
"""

import unittest

import jupyter_kernel_test


class MnistlabKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "mnistlab"
    language_name = "mnistlab"
    file_extension = ".lab"

    code_hello_world = 'print "hello, world"'
    # Flipping digits is allowed with `force`, with a warning on stderr.
    code_stderr = "augment flip h force"

    completion_samples = [
        {"text": "norm", "matches": {"normalize"}},
        {"text": "load fa", "matches": {"fashion-mnist"}},
        {"text": "model seed", "matches": {"seed-small", "seed-cnn"}},
        {"text": "info\nspl", "matches": {"split"}},
    ]
    complete_code_samples = ['print "hello"', "load mnist\ninfo", "# a comment", ""]
    incomplete_code_samples = ['print "hello', 'load mnist\nprint "unclosed']
    invalid_code_samples = ["lod mnist", "split 70/15", "fit many"]

    code_display_data = [
        {"code": "load mnist\nshow samples 4", "mime": "image/png"},
        {"code": "load mnist\ninfo", "mime": "text/html"},
    ]
    code_inspect_sample = "normalize"
    code_generate_error = "load npz no-such-file.npz"

    def test_inspect_finds_docs(self):
        self.flush_channels()
        msg_id = self.kc.inspect("split 70/15/15", cursor_pos=2)
        reply = self.get_non_kernel_info_reply(timeout=15)
        self.assertEqual(reply["parent_header"]["msg_id"], msg_id)
        self.assertTrue(reply["content"]["found"])
        self.assertIn("split TRAIN/VAL/TEST", reply["content"]["data"]["text/plain"])
        self.assertIn("**split**", reply["content"]["data"]["text/markdown"])

    def test_execution_count_increments(self):
        self.flush_channels()
        first, _ = self.execute_helper('print "a"')
        second, _ = self.execute_helper('print "b"')
        silent, outputs = self.execute_helper('print "c"', silent=True)
        third, _ = self.execute_helper('print "d"', store_history=False)
        self.assertEqual(second["content"]["execution_count"], first["content"]["execution_count"] + 1)
        self.assertEqual(outputs, [], "a silent execute broadcasts no output")
        self.assertEqual(silent["content"]["execution_count"], second["content"]["execution_count"])
        self.assertEqual(third["content"]["execution_count"], second["content"]["execution_count"])

    def test_cell_stops_at_the_first_error(self):
        self.flush_channels()
        reply, outputs = self.execute_helper('print "before"\nload npz no-such-file.npz\nprint "after"')
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "DataError", "the kind of the failure")
        texts = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
        self.assertEqual(texts, ["before\n"])
        errors = [m for m in outputs if m["msg_type"] == "error"]
        self.assertEqual(len(errors), 1)
        self.assertIn("no-such-file.npz", errors[0]["content"]["evalue"])

    def test_table_has_html_and_text(self):
        self.flush_channels()
        reply, outputs = self.execute_helper("load mnist\ninfo")
        self.assertEqual(reply["content"]["status"], "ok")
        tables = [m["content"]["data"] for m in outputs if m["msg_type"] == "display_data"]
        self.assertTrue(tables)
        self.assertTrue(tables[0]["text/html"].startswith("<table>"))
        self.assertIn("train", tables[0]["text/plain"])

    def test_comm_info_and_history_are_empty(self):
        self.flush_channels()
        self.kc.comm_info()
        reply = self.get_non_kernel_info_reply(timeout=15)
        self.assertEqual(reply["content"], {"status": "ok", "comms": {}})
        self.kc.history()
        reply = self.get_non_kernel_info_reply(timeout=15)
        self.assertEqual(reply["content"]["history"], [])


if __name__ == "__main__":
    unittest.main()
