"""The docstrings of the named optimizers and the public blocks: their arguments and their papers.

- Every public function defined in ``gradtx/optimizers/*.py``, ``gradtx/transforms/*.py``,
  ``gradtx/losses/*.py``, ``gradtx/projections/*.py`` and the ``DOCUMENTED_MODULES``
  (``obj.__module__`` is the module) has an ``Args:`` section, after a blank line, with one
  ``name:`` entry per parameter of its signature, in signature order, and no other entry;
  ``*args`` and ``**kwargs`` may be named with their stars or without. A function without
  parameters needs no section.
- Every author-year citation in those docstrings ("Name, 2015", "Name & Name, 2015",
  "Name et al., 2015", "Name et al. 2015", "(Name 2016)") is followed, in its paragraph and before
  the next citation, by an :arxiv:`...` or :doi:`...` role (docs/conf.py makes them links),
  unless ``UNLINKED`` names it with the reason no identifier could be confirmed.
- No file under ``gradtx/`` holds a URL: the only addresses are the two link templates of
  docs/conf.py.

Each check is a function of a docstring, a function or a folder, so the tests at the end plant
bad docstrings in a throwaway module (and a URL in a throwaway folder) and check that each is
reported.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
from collections.abc import Callable, Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/suites/ -> root
PACKAGE = os.path.join(ROOT, "gradtx")
DOCUMENTED_PACKAGES = ("gradtx.optimizers", "gradtx.transforms", "gradtx.losses", "gradtx.projections")
DOCUMENTED_MODULES = (
    "gradtx.second_order",
    "gradtx.assignment",
    "gradtx.perturbations",
    "gradtx.experimental.aggregating",
    "gradtx.microbatching",
)

# Citations left without a link, each with the reason: keep this short.
UNLINKED = {
    "Nesterov, 1984": "Nesterov's 1984 paper on normalized gradient descent has no arXiv id, "
    "and no DOI for it could be confirmed",
    "Dozat, 2016": "NAdam is an ICLR 2016 workshop paper, published on OpenReview only: no arXiv id or DOI",
    "Zaheer et al., 2018": "Yogi is published in NeurIPS 2018's proceedings only: no arXiv id or DOI",
    "Duchi, Hazan & Singer, 2011": "AdaGrad is in JMLR 12, which assigns no DOI, and has no arXiv version",
    "Tieleman & Hinton, 2012": "RMSProp was introduced in a Coursera lecture, not a paper",
    "Igel & Hüsken, 2000": "a conference paper without an arXiv id; no DOI for it could be confirmed",
    "Polyak, 1987": "the book Introduction to Optimization, which has no DOI or arXiv id",
}

# ------------------------------------------------------------------ the functions


def functions_of(module) -> Iterator[tuple[str, Callable]]:
    """The functions defined in ``module`` (not imported into it) under a public name, each once:
    by its own name when that is one of them (``partition``, not its alias ``multi_transform``)."""
    names: dict[int, list[str]] = {}
    functions: dict[int, Callable] = {}
    for name, obj in inspect.getmembers(module, inspect.isfunction):
        if not name.startswith("_") and obj.__module__ == module.__name__:
            names.setdefault(id(obj), []).append(name)
            functions[id(obj)] = obj
    for key, obj in functions.items():
        yield (obj.__name__ if obj.__name__ in names[key] else names[key][0]), obj


def public_functions() -> list[tuple[str, Callable]]:
    """``("optimizers.adam.adam", adam)`` for every public function of the documented packages."""
    found = []
    for package_name in DOCUMENTED_PACKAGES:
        package = importlib.import_module(package_name)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if info.ispkg or info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package_name}.{info.name}")
            short = module.__name__.removeprefix("gradtx.")
            found.extend((f"{short}.{name}", fn) for name, fn in functions_of(module))
    for module_name in DOCUMENTED_MODULES:
        module = importlib.import_module(module_name)
        short = module.__name__.removeprefix("gradtx.")
        found.extend((f"{short}.{name}", fn) for name, fn in functions_of(module))
    return found


FUNCTIONS = public_functions()
IDS = [name for name, _ in FUNCTIONS]

# ------------------------------------------------------------------ Args sections

ARGS_HEADER = re.compile(r"^(?P<indent>[ \t]*)Args:[ \t]*$")
ARGS_ENTRY = re.compile(r"(?P<name>\*{0,2}[A-Za-z_]\w*)[ \t]*(?:\([^()]*\))?[ \t]*:(?:\s|$)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def args_entries(doc: str | None) -> list[str] | None:
    """The names of the entries of the first ``Args:`` section of ``doc``, in order, as written
    (stars included); ``None`` without such a section. A line at the entries' indentation that
    is not ``name:`` or ``name (type):`` is returned as ``"?<line>"``."""
    lines = inspect.cleandoc(doc or "").splitlines()
    headers = [(at, match) for at, match in enumerate(map(ARGS_HEADER.match, lines)) if match]
    if not headers:
        return None
    at, header = headers[0]
    entries, entry_indent = [], None
    for line in lines[at + 1 :]:
        if not line.strip():
            continue
        if _indent(line) <= len(header.group("indent")):
            break
        if entry_indent is None:
            entry_indent = _indent(line)
        if _indent(line) != entry_indent:
            continue  # the continuation of an entry
        entry = ARGS_ENTRY.match(line.strip())
        entries.append(entry.group("name") if entry else "?" + line.strip())
    return entries


def parameter_names(fn: Callable) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()]


def args_problems(fn: Callable) -> list[str]:
    """What is wrong with ``fn``'s ``Args:`` section: nothing when it names every parameter of
    the signature, in order, and nothing else."""
    wanted = parameter_names(fn)
    if not wanted:
        return []
    written = args_entries(fn.__doc__)
    if written is None:
        return [f"no Args: section (parameters: {', '.join(wanted)})"]
    lines = inspect.cleandoc(fn.__doc__).splitlines()
    at = next(i for i, line in enumerate(lines) if ARGS_HEADER.match(line))
    problems = ["no blank line before Args:"] if at and lines[at - 1].strip() else []
    problems += [f"not an entry: {entry[1:]!r}" for entry in written if entry.startswith("?")]
    names = [entry.lstrip("*") for entry in written if not entry.startswith("?")]
    missing = [name for name in wanted if name not in names]
    unknown = [name for name in names if name not in wanted]
    twice = sorted({name for name in names if names.count(name) > 1})
    if missing:
        problems.append(f"no entry for {', '.join(missing)}")
    if unknown:
        problems.append(f"entries for what is not a parameter: {', '.join(unknown)}")
    if twice:
        problems.append(f"entries given twice: {', '.join(twice)}")
    if not (missing or unknown or twice) and names != wanted:
        problems.append(f"entries in the order {', '.join(names)}, not the signature's {', '.join(wanted)}")
    return problems


@pytest.mark.parametrize("fn", [fn for _, fn in FUNCTIONS], ids=IDS)
def test_the_args_section_names_every_parameter(fn):
    problems = args_problems(fn)
    assert not problems, f"{fn.__module__}.{fn.__name__}: " + "; ".join(problems)


# ------------------------------------------------------------------ citations

_NAME = r"[A-ZÀ-ÖØ-ÞŁŚŹŻ][a-zß-öø-ÿłśźżćńą'’]+(?:[A-Z-][A-Za-zß-öø-ÿłśźżćńą'’]+)*"
_YEAR = r"(?:1[6-9]|20)\d\d[a-z]?"
_AUTHORS = rf"{_NAME}(?:(?:,\s+{_NAME})*\s+(?:&|and)\s+{_NAME})?"  # Name, or Name, Name & Name
CITATION = re.compile(
    "|".join(
        [
            rf"\b{_AUTHORS}(?:\s+et\s+al\.?)?,\s+{_YEAR}\b",  # Name, 2015 / Name & Name, 2015 / Name et al., 2015
            rf"\b{_NAME}\s+et\s+al\.?\s+{_YEAR}\b",  # Name et al. 2015
            rf"\(\s*{_AUTHORS}\s+{_YEAR}\s*(?=[),;])",  # (Name 2016)
        ]
    )
)
ROLE = re.compile(r":(?:arxiv|doi):`[^`\s]+`")


def citation_key(text: str) -> str:
    """A citation as ``UNLINKED`` names it: one space between words, no parenthesis."""
    return " ".join(text.strip("( ").split())


def unlinked_citations(doc: str | None) -> list[str]:
    """The citations of ``doc`` that no :arxiv: or :doi: role follows in their paragraph
    before the next citation."""
    found = []
    for paragraph in re.split(r"\n[ \t]*\n", inspect.cleandoc(doc or "")):
        matches = list(CITATION.finditer(paragraph))
        for match, following in zip(matches, matches[1:] + [None]):
            end = following.start() if following else len(paragraph)
            if not ROLE.search(paragraph, match.end(), end):
                found.append(citation_key(match.group()))
    return found


@pytest.mark.parametrize("fn", [fn for _, fn in FUNCTIONS], ids=IDS)
def test_every_citation_is_linked(fn):
    missing = [c for c in unlinked_citations(fn.__doc__) if c not in UNLINKED]
    assert not missing, (
        f"{fn.__module__}.{fn.__name__} cites without an :arxiv: or :doi: role after it: {missing}; "
        "add the identifier, or (when none can be confirmed) list the citation in UNLINKED with the reason"
    )


def test_the_unlinked_citations_are_still_cited_unlinked():
    cited = {c for _, fn in FUNCTIONS for c in unlinked_citations(fn.__doc__)}
    assert not set(UNLINKED) - cited, f"UNLINKED names citations no docstring makes: {sorted(set(UNLINKED) - cited)}"


# ------------------------------------------------------------------ no URLs

URL = re.compile(rb"https?://")


def files_with_urls(folder: str) -> list[str]:
    """The files under ``folder`` (byte-compiled caches aside) holding ``http://`` or ``https://``."""
    found = []
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(files):
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                if URL.search(f.read()):
                    found.append(os.path.relpath(path, folder))
    return found


def test_the_library_holds_no_url():
    found = files_with_urls(PACKAGE)
    assert not found, f"URLs in {found}: cite with :arxiv:`id` or :doi:`id` (the templates are in docs/conf.py)"


# ------------------------------------------------------------------ planted mistakes

PLANTED = '''
from os.path import join  # imported: not this module's


def no_section(a, b=1):
    """A summary, and an example but no Args.

    Example:
        >>> 1
        1
    """


def one_missing(a, *rest, key=None, **extra):
    """A summary.

    Args:
        a: the first.
        *rest: the others.
        **extra: the rest, but ``key`` is missing.
    """


def wrong_order(a, b):
    """A summary.

    Args:
        b: the second.
        a: the first.
    """


def glued(a):
    """A summary whose paragraph runs into the section.
    Args:
        a: the first.
    """


def stale_entry(a):
    """A summary.

    Args:
        a: the first.
        gone: a parameter that was removed.
    """


def loose_line(a):
    """A summary.

    Args:
        a: the first.
        this line is no entry
    """


def unlinked(a):
    """Heavy ball (Polyak, 1964) and Adam (Kingma & Ba, 2015, :arxiv:`1412.6980`).

    Args:
        a: the first.
    """


def cited_every_way(a):
    """Smith, 2015; Smith & Jones, 2015. Smith et al., 2015 and Smith et al. 2015 (Smith 2016).
    Lists: (Smith, Jones & Brown, 2015), (Smith and Jones 2016).

    Linked: Smith, 2015, :arxiv:`1.2`; Smith & Jones, 2015, :doi:`10.1/x`. Smith et al.,
    2015 (:arxiv:`1.2`) and Smith et al. 2015, :doi:`10.1/x` (Smith 2016, :arxiv:`1.2`).

    A role in the next paragraph does not count: Jones, 2017.

    :arxiv:`1.2`

    Args:
        a: the first.
    """


def good(a, *rest, key=None, **extra):
    """Adam (Kingma & Ba, 2015, :arxiv:`1412.6980`); a venue (ICLR 2015) is no citation.

    Args:
        a: the first.
        rest: the others, named without the star.
        key (str): with a type.
        **extra: named with the stars.
    """


def no_parameters():
    """Nothing to list."""


alias = good


def _private(a):
    """Not checked."""
'''


@pytest.fixture
def planted(tmp_path):
    path = tmp_path / "planted_docstrings.py"
    path.write_text(PLANTED, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("planted_docstrings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_planted_functions_are_found(planted):
    names = [name for name, _ in functions_of(planted)]
    assert "_private" not in names and "join" not in names and "alias" not in names
    assert names.count("good") == 1 and {"no_section", "no_parameters", "unlinked"} <= set(names)


def test_planted_args_mistakes_are_reported(planted):
    assert args_problems(planted.no_section) == ["no Args: section (parameters: a, b)"]
    assert args_problems(planted.one_missing) == ["no entry for key"]
    assert args_problems(planted.wrong_order) == ["entries in the order b, a, not the signature's a, b"]
    assert args_problems(planted.stale_entry) == ["entries for what is not a parameter: gone"]
    assert args_problems(planted.glued) == ["no blank line before Args:"]
    assert args_problems(planted.loose_line) == ["not an entry: 'this line is no entry'"]
    assert args_problems(planted.good) == []
    assert args_problems(planted.no_parameters) == []


def test_planted_unlinked_citations_are_reported(planted):
    assert unlinked_citations(planted.unlinked.__doc__) == ["Polyak, 1964"]
    assert unlinked_citations(planted.good.__doc__) == []
    assert unlinked_citations(planted.cited_every_way.__doc__) == [
        "Smith, 2015",
        "Smith & Jones, 2015",
        "Smith et al., 2015",
        "Smith et al. 2015",
        "Smith 2016",
        "Smith, Jones & Brown, 2015",
        "Smith and Jones 2016",
        "Jones, 2017",
    ]


def test_a_planted_url_is_reported(tmp_path):
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "cached.pyc").write_bytes(b"http" + b"://cached")
    (tmp_path / "clean.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "linked.py").write_text('"""See ' + "https:" + '//somewhere."""\n', encoding="utf-8")
    assert files_with_urls(str(tmp_path)) == [os.path.join("sub", "linked.py")]
