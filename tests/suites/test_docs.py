"""The docs stay true to the library.

- The API reference (docs/api/) has one page per category (optimizers, transforms, schedules, ...),
  not per module. Every name in ``gradtx.__all__``, and every function and class of the namespace
  modules it lists (``gradtx.tree``, ...), is documented on one of its pages; every public
  module of the library is covered by some page; each page documents only what exists, by its
  public path, and opens with a title and a paragraph; no name is documented twice; and every page
  is in the API toctree of docs/index.md.
- The guides run: in the pages listed in ``RUNNABLE_PAGES``, every ```` ```python ````
  block is executed and every ```` ```pycon ```` block is checked as a doctest, in
  order and in one namespace per page. A block meant to be read but not run is
  written as a ```` ```{code-block} python ```` directive instead.
"""

import collections
import doctest
import fnmatch
import importlib
import inspect
import os
import pkgutil
import re

import pytest

import gradtx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/suites/ -> root
DOCS = os.path.join(ROOT, "docs")
API = os.path.join(DOCS, "api")
INDEX = os.path.join(DOCS, "index.md")
RUNNABLE_PAGES = ["getting-started.md", "adam.md", "mistakes.md", "faults.md", "research-optimizers.md"]

DIRECTIVE = re.compile(r"^\s*\.\. auto(function|class|data|module|exception|attribute|method)::\s*(\S+)", re.MULTILINE)


def api_pages():
    return sorted(f for f in os.listdir(API) if f.endswith((".md", ".rst")))


def read(page):
    with open(os.path.join(API, page), encoding="utf-8") as f:
        return f.read()


def directives(page):
    """The ``(kind, dotted name)`` of each autodoc directive on a page, ``kind`` as in ``auto<kind>``."""
    return DIRECTIVE.findall(read(page))


def documented(page):
    """The dotted names a page's autodoc directives document."""
    return [name for _, name in directives(page)]


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


def resolved(page):
    """The ``(kind, dotted name, object)`` of each directive on a page whose name resolves; the
    others fail ``test_api_page_documents_only_what_exists_by_its_public_path``."""
    for kind, dotted in directives(page):
        try:
            yield kind, dotted, resolve(dotted)
        except (ImportError, AttributeError):
            continue


def public_modules():
    """Every public module and package of the library: no component of its name starts with ``_``."""
    found = pkgutil.walk_packages(gradtx.__path__, "gradtx.")
    return sorted(m.name for m in found if not any(part.startswith("_") for part in m.name.split(".")))


def namespace_modules():
    """The modules in ``gradtx.__all__`` (``gradtx.tree``, ``gradtx.checkpoint``, ...)."""
    return [name for name in gradtx.__all__ if inspect.ismodule(getattr(gradtx, name))]


def module_api(module):
    """The functions and classes of a module's public names: its ``__all__``, or else the names
    without a leading underscore; type aliases and what it imports from outside gradtx are left out."""
    names = getattr(module, "__all__", [n for n in vars(module) if not n.startswith("_")])
    return [
        n
        for n in names
        if (inspect.isfunction(getattr(module, n)) or inspect.isclass(getattr(module, n)))
        and getattr(module, n).__module__.startswith("gradtx.")
    ]


def public_paths(obj):
    """The paths users write for ``obj``: ``gradtx.<name>`` for a name in ``gradtx.__all__``, and
    ``gradtx.<module>.<name>`` for a name in a public namespace module listed there (``gradtx.tree``)."""
    paths = {f"gradtx.{name}" for name in gradtx.__all__ if getattr(gradtx, name) is obj}
    for m in namespace_modules():
        paths |= {f"gradtx.{m}.{n}" for n in module_api(getattr(gradtx, m)) if getattr(getattr(gradtx, m), n) is obj}
    return paths


def test_every_public_name_is_documented():
    """Every name in ``gradtx.__all__``, and every function and class of the namespace modules it
    lists (``gradtx.tree.norm``, ``gradtx.checkpoint.state_to_bytes``), has an autodoc entry, or is
    the same function or class as a name that has one (an alias: ``gradtx.kl_divergence`` is
    ``gradtx.losses.kl_divergence``)."""
    everything = {name for page in api_pages() for name in documented(page)}
    public = [f"gradtx.{name}" for name in gradtx.__all__] + [
        f"gradtx.{m}.{n}" for m in namespace_modules() for n in module_api(getattr(gradtx, m))
    ]
    # a name that is the same function or class as a documented one (gradtx.kl_divergence and
    # gradtx.losses.kl_divergence, gradtx.chain and gradtx.transforms.chain) is documented there
    documented_objects = set()
    for dotted in everything:
        try:
            obj = resolve(dotted)
        except (ImportError, AttributeError):
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            documented_objects.add(id(obj))
    missing = [d for d in public if d not in everything and id(resolve(d)) not in documented_objects]
    pages_of_module = collections.defaultdict(set)  # where the other names of a module are documented
    for page in api_pages():
        for _, _, obj in resolved(page):
            pages_of_module[obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)].add(page)

    def where(dotted):
        obj = resolve(dotted)
        module = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", "gradtx.?")
        pages = ", ".join(f"docs/api/{p}" for p in sorted(pages_of_module.get(module, ()))) or "a new page"
        return f"{dotted} (from {module}) -> {pages}"

    assert not missing, "public names with no autodoc entry under docs/api/:\n" + "\n".join(map(where, missing))


def test_every_public_module_is_covered():
    """A module is covered when a page has an ``automodule`` directive for it, documents a function
    or class defined in it, or documents a name under its path (``gradtx.core.aliases.Params``)."""
    covered = set()
    for page in api_pages():
        for kind, dotted, obj in resolved(page):
            if kind == "module":
                covered.add(dotted)
                continue
            covered.add(dotted.rpartition(".")[0])
            if inspect.isfunction(obj) or inspect.isclass(obj):
                covered.add(obj.__module__)
    missing = [m for m in public_modules() if m not in covered]
    assert not missing, (
        "public modules that no page under docs/api/ covers (document a name defined in each, by its "
        f"public path, or add '.. automodule:: <module>' to the page of its category): {missing}"
    )


@pytest.mark.parametrize("page", api_pages())
def test_api_page_documents_only_what_exists_by_its_public_path(page):
    text = read(page)
    assert re.match(r"# \S.*\n\n[^\s#`]", text), f"docs/api/{page} must open with a '# Title' line and a paragraph"
    found = directives(page)
    assert found, f"docs/api/{page} documents nothing"
    for kind, dotted in found:
        try:
            obj = resolve(dotted)
        except (ImportError, AttributeError) as error:
            pytest.fail(f"docs/api/{page} documents {dotted}, which does not exist ({error})")
        if kind == "module":
            assert inspect.ismodule(obj), f"docs/api/{page}: automodule {dotted} is not a module"
            continue
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or not obj.__module__.startswith("gradtx."):
            continue  # data (a type alias such as typing.Any, a constant) is shared with unrelated names
        paths = public_paths(obj)
        assert not paths or dotted in paths, (
            f"docs/api/{page} documents {dotted}, which users write as {' or '.join(sorted(paths))}"
        )


def test_no_name_is_documented_twice():
    seen = collections.defaultdict(list)
    for page in api_pages():
        for dotted in documented(page):
            seen[dotted].append(page)
    twice = {dotted: pages for dotted, pages in seen.items() if len(pages) > 1}
    assert not twice, f"names with more than one autodoc entry under docs/api/: {twice}"


def test_every_api_page_is_in_the_toctree():
    with open(INDEX, encoding="utf-8") as f:
        index = f.read()
    entries, globbed = [], []
    for block in re.findall(r"^```\{toctree\}[^\n]*\n(.*?)^```", index, re.MULTILINE | re.DOTALL):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        (globbed if ":glob:" in lines else entries).extend(line for line in lines if not line.startswith(":"))
    pages = [f"api/{os.path.splitext(page)[0]}" for page in api_pages()]
    missing = [p for p in pages if p not in entries and not any(fnmatch.fnmatch(p, g) for g in globbed)]
    assert not missing, f"API pages missing from the toctree of docs/index.md: {missing}"
    stale = [e for e in entries if e.startswith("api/") and e not in pages]
    assert not stale, f"toctree entries of docs/index.md with no page under docs/api/: {stale}"


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
