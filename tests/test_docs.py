"""The docs stay true to the library.

- Every name in ``gradtx.__all__`` is documented on an API page (docs/api/), every
  library module has its page, and each page documents only what exists, and only
  names that live in its module.
- The guides run: in the pages listed in ``RUNNABLE_PAGES``, every ```` ```python ````
  block is executed and every ```` ```pycon ```` block is checked as a doctest, in
  order and in one namespace per page. A block meant to be read but not run is
  written as a ```` ```{code-block} python ```` directive instead.
"""

import doctest
import importlib
import inspect
import os
import pkgutil
import re

import pytest

import gradtx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
API = os.path.join(DOCS, "api")
RUNNABLE_PAGES = ["getting-started.md", "adam.md", "mistakes.md", "faults.md"]

DIRECTIVE = re.compile(r"^\s*\.\. auto(?:function|class|data|module|exception|attribute)::\s*(\S+)", re.MULTILINE)


def api_pages():
    return sorted(f for f in os.listdir(API) if f.endswith((".md", ".rst")))


def documented(page):
    """The dotted names a page's autodoc directives document."""
    with open(os.path.join(API, page), encoding="utf-8") as f:
        return DIRECTIVE.findall(f.read())


def resolve(dotted):
    """The object a dotted name refers to; import the longest module prefix, then getattr."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)  # AttributeError: the page names something missing
        return obj
    raise ImportError(dotted)


def library_modules():
    """The last component of each public module's name (a package's modules, not the package)."""
    found = pkgutil.walk_packages(gradtx.__path__, "gradtx.")
    return sorted(m.name.split(".")[-1] for m in found if not m.ispkg and not m.name.split(".")[-1].startswith("_"))


def page_module(page):
    """The module a page is about: the dotted name in backquotes on its first line."""
    with open(os.path.join(API, page), encoding="utf-8") as f:
        return re.match(r"# `(gradtx[\w.]*)`", f.readline()).group(1)


def test_every_public_name_is_documented():
    everything = {name for page in api_pages() for name in documented(page)}
    missing = [name for name in gradtx.__all__ if f"gradtx.{name}" not in everything]

    def where(name):
        obj = getattr(gradtx, name)
        module = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", "gradtx.?")
        return f"gradtx.{name} -> docs/api/{module.split('.')[-1]}.md"

    assert not missing, "names in gradtx.__all__ with no autodoc entry under docs/api/:\n" + "\n".join(
        map(where, missing)
    )


def test_every_module_has_an_api_page():
    pages = {os.path.splitext(page)[0] for page in api_pages()}
    missing = [m for m in library_modules() if m not in pages]
    assert not missing, f"library modules without a page docs/api/<module>.md: {missing}"


@pytest.mark.parametrize("page", api_pages())
def test_api_page_documents_only_what_exists_in_its_module(page):
    module = page_module(page)
    names = documented(page)
    assert names, f"docs/api/{page} documents nothing"
    for dotted in names:
        try:
            obj = resolve(dotted)
        except (ImportError, AttributeError) as error:
            pytest.fail(f"docs/api/{page} documents {dotted}, which does not exist ({error})")
        if inspect.ismodule(obj):
            home = obj.__name__
        elif inspect.isfunction(obj) or inspect.isclass(obj):
            home = obj.__module__
        else:
            continue  # data (a type alias, a constant): its __module__ says nothing
        in_page_module = getattr(importlib.import_module(module), dotted.split(".")[-1], None) is obj
        assert home == module or in_page_module, f"docs/api/{page} documents {dotted}, which lives in {home}, not {module}"


FENCE = re.compile(r"^```(python|pycon)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_guide_code_runs(page):
    path = os.path.join(DOCS, page)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    namespace = {"__name__": f"docs.{page}"}
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    blocks = list(FENCE.finditer(text))
    assert blocks, f"docs/{page} has no code to run"
    for block in blocks:
        kind, code = block.group(1), block.group(2)
        line = text.count("\n", 0, block.start()) + 2
        where = f"docs/{page}, line {line}"
        if kind == "python":
            exec(compile(code, where, "exec"), namespace)
        else:
            test = parser.get_doctest(code, namespace, where, path, line - 1)
            report = []
            result = runner.run(test, out=report.append, clear_globs=False)
            assert result.failed == 0, "".join(report)
            namespace.update(test.globs)  # a DocTest runs in a copy of the namespace
