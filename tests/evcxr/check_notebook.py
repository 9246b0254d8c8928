"""Executes notebooks/06-rust.ipynb in evcxr_jupyter (kernel `rust`) and checks that every cell
shows what it should: the cells tagged `one-block` show text, a table and two images in one
rich output, in that order, with a plain-text alternative; every code cell has output and no
error. With --save the executed notebook is written back (how the saved outputs were made),
before the checks, so a failing run can be looked at."""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "06-rust.ipynb"


def check_one_block(cell):
    """One display/execute result holding HTML (table before both images) and plain text."""
    rich = [o for o in cell.outputs if o.output_type in ("execute_result", "display_data")]
    assert len(rich) == 1, f"expected one rich output, got {len(rich)}: {cell.source!r}"
    data = rich[0]["data"]
    html, plain = data.get("text/html", ""), data.get("text/plain", "")
    assert html and plain, f"both alternatives expected, got {sorted(data)}"
    table, first = html.find("<table>"), html.find("<img ")
    second = html.find("<img ", first + 1)
    assert 0 <= table < first < second, f"order table < image < image broken: {table}, {first}, {second}"
    assert html.count("data:image/png;base64,") == 2, "two inline PNGs expected"
    assert plain.count("[image: ") == 2, "the plain alternative names both images"


def main():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, kernel_name="rust", timeout=1800, resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    if "--save" in sys.argv:
        nbformat.write(nb, NOTEBOOK)
        print(f"saved {NOTEBOOK}")
    for cell in code:
        # `:dep` only adds a dependency (its build shows nothing when it succeeds).
        assert cell.outputs or cell.source.startswith(":dep"), f"a cell produced no output: {cell.source!r}"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{cell.source!r}: {errors[0].get('evalue')}"
    tagged = [c for c in code if "one-block" in c.metadata.get("tags", [])]
    assert tagged, "no cell tagged one-block"
    for cell in tagged:
        check_one_block(cell)
    print(f"06-rust.ipynb: {len(code)} code cells ran; {len(tagged)} one-block cell(s) hold a table and two images in order")


if __name__ == "__main__":
    main()
