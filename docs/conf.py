"""Sphinx configuration for the gradtx docs; build them with `python3 dev.py docs`."""

import gradtx

project = "gradtx"
author = "the gradtx authors"
copyright = "the gradtx authors"
release = version = gradtx.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style "Args:" / "Returns:" / "Example:" sections
    "myst_parser",  # the pages are Markdown
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Signatures show names and defaults; the docstrings say what each argument is.
autodoc_typehints = "none"
autodoc_member_order = "bysource"
add_module_names = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = f"gradtx {release}"
html_theme_options = {"description": "Composable gradient transformations for JAX", "fixed_sidebar": True}
