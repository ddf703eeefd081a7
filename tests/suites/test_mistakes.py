"""The table of common mistakes in docs/mistakes.md is the library's behaviour.

Each row of the table is one test: the page's setup block runs, then the row's
example code; the row's last column names the exception and the fragments of its
message (each a code span, in order). A row whose last column begins with
"No error" must run without one; the page's doctests (tests/suites/test_docs.py) show
what such code returns.
"""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = os.path.join(ROOT, "docs", "mistakes.md")

SETUP = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")


def code_spans(cell):
    """The contents of the Markdown code spans in ``cell`` (one space of padding stripped, as CommonMark does)."""
    spans = []
    for _, text in CODE_SPAN.findall(cell):
        if len(text) > 2 and text.startswith(" ") and text.endswith(" "):
            text = text[1:-1]
        spans.append(text)
    return spans


def read_page():
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    setup = SETUP.search(text)
    assert setup, "docs/mistakes.md has no setup block (```python) before its table"
    rows, in_table = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("| Mistake |"):
            in_table = True
            continue
        if not in_table:
            continue
        if not line.startswith("|"):
            if rows:
                break
            continue
        if set(line) <= set("|- "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, f"docs/mistakes.md line {number}: expected 3 cells, got {cells}"
        mistake, example, result = cells
        (code,) = code_spans(example) or [None]
        assert code, f"docs/mistakes.md line {number}: the example is not one code span"
        rows.append(pytest.param(code, result, number, id=f"line{number}-{mistake[:40]}"))
    return setup.group(1), rows


SETUP_CODE, ROWS = read_page()


def test_the_table_has_the_mistakes_it_promises():
    assert len(ROWS) >= 20
    raised = {code_spans(row.values[1])[0] for row in ROWS if not row.values[1].startswith("No error")}
    assert {"ValueError", "TypeError", "KeyError"} <= raised


@pytest.mark.parametrize("code, result, line", ROWS)
def test_row(code, result, line):
    namespace = {"__name__": "docs.mistakes"}
    exec(compile(SETUP_CODE, "docs/mistakes.md (setup)", "exec"), namespace)
    where = f"docs/mistakes.md, line {line}"
    compiled = compile(code, where, "exec")
    if result.startswith("No error"):
        exec(compiled, namespace)
        return
    expected_type, *fragments = code_spans(result)
    assert fragments, f"{where}: the last column quotes no message text"
    with pytest.raises(Exception) as caught:
        exec(compiled, namespace)
    error = caught.value
    assert type(error).__name__ == expected_type, f"{where}: raised {type(error).__name__}: {error}"
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    position = 0
    for fragment in fragments:
        found = message.find(fragment, position)
        assert found >= 0, f"{where}: {fragment!r} is not in the message (after position {position}):\n{message}"
        position = found + len(fragment)
