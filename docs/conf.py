"""Sphinx configuration of the asyncfork docs site: ``make docs`` builds it into build/docs.

The pages are Markdown (MyST), the theme is furo, the API reference is autodoc over the
docstrings. The build runs offline with warnings as errors and nitpicky references, so a
broken cross-reference, a link to a missing page or heading, or a name the reference does
not document fails it.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package from this checkout, even when not installed
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

from asyncfork import __version__  # noqa: E402

project = "asyncfork"
author = "the asyncfork authors"
copyright = "2026, the asyncfork authors"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "apiref",  # docs/_ext/apiref.py: autodoc adjusted, and every public name checked
]

# ---------------------------------------------------------------- the pages
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/_build", "**/.ipynb_checkpoints"]
# `[text](page.md#a-heading)` links resolve to headings down to this level, and a link to a
# page or heading that does not exist is a warning (an error under -W).
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence", "deflist"]
# Relative links (`[x](other.md)`) are cross-references checked by the build; only
# links with a scheme (https://...) are external, and those are not fetched.
myst_all_links_external = False

# ---------------------------------------------------------------- the API reference
autodoc_member_order = "bysource"
autodoc_typehints = "signature"  # every parameter's type and the return type, in the signature
autodoc_typehints_format = "short"

autodoc_default_options = {"members": True}
# The docstrings' sections ("Raises:") are Google style, which napoleon turns into fields.
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Every cross-reference must resolve. The build is offline (no intersphinx), so names from
# the standard library and the optional packages are rendered without a link rather than
# reported; so are type variables and the private modules' names. Any other reference,
# asyncfork's own above all, must resolve.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(asyncio|collections|concurrent|contextlib|contextvars|os|types|typing)\b.*"),
    (r"py:.*", r"(distributed|opentelemetry|tqdm)\b.*"),
    (r"py:.*", r"asyncfork\._.*"),
    # Type variables, and the names signatures spell short (``Span`` is OpenTelemetry's).
    (r"py:(class|obj)", r"(P|P\.args|P\.kwargs|T|T_co|Span|Executor|Client)"),
]

# ---------------------------------------------------------------- HTML
html_theme = "furo"
html_title = f"asyncfork {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
