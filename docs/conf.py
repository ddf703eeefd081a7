"""Sphinx configuration for the gradtx docs; build them with `python3 dev.py docs`."""

import gradtx

project = "gradtx"
author = "the gradtx authors"
copyright = "the gradtx authors"
release = version = gradtx.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style "Args:" / "Returns:" / "Example:" sections
    "sphinx.ext.extlinks",  # the :arxiv: and :doi: roles of the citations
    "myst_parser",  # the pages are Markdown
]

# Docstrings cite papers by identifier only, :arxiv:`1412.6980` or :doi:`10.1007/...`; these
# are the only two URL templates in the repository, and the library's source holds no address.
extlinks = {
    "arxiv": ("https://arxiv.org/abs/%s", "arXiv:%s"),
    "doi": ("https://doi.org/%s", "doi:%s"),
}

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Signatures show names and defaults; each argument's type is listed under "Parameters" with the
# description, and the return type under "Return type".
autodoc_typehints = "description"
autodoc_member_order = "bysource"
add_module_names = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = f"gradtx {release}"
html_theme_options = {"description": "Composable gradient transformations for JAX", "fixed_sidebar": True}

# Annotations name the aliases of gradtx.core.aliases (every module has `from __future__ import
# annotations`, so they are strings): show the alias, linked to its entry on api/protocol, instead
# of its expansion ("ScalarOrSchedule", not "float | Array | Callable[[Any], Array]"), and show
# linked types without their module path.
_ALIASES = ["PyTree", "Params", "Updates", "OptState", "KeyPath", "Schedule", "ScalarOrSchedule", "Mask", "AxisNames"]
autodoc_type_aliases = {name: f"gradtx.core.aliases.{name}" for name in _ALIASES}
python_use_unqualified_type_names = True

# Napoleon reads the first line of a data docstring as "type: description"; the aliases' docstrings
# are prose whose first sentence may hold a colon ("An optimizer's state: NamedTuples ..."), and
# their type is their value, which autodoc shows. So data docstrings bypass napoleon: kept before
# it runs (priority 500) and put back after.
_data_docstrings = {}


def _keep_data_docstring(app, what, name, obj, options, lines):
    if what == "data":
        _data_docstrings[name] = list(lines)


def _restore_data_docstring(app, what, name, obj, options, lines):
    if what == "data" and name in _data_docstrings:
        lines[:] = _data_docstrings.pop(name)


def setup(app):
    app.connect("autodoc-process-docstring", _keep_data_docstring, priority=400)
    app.connect("autodoc-process-docstring", _restore_data_docstring, priority=600)
