"""A Sphinx extension for asyncfork's API reference (docs/api.md): autodoc, adjusted.

- napoleon reads the docstrings' ``Raises:`` sections, but not those of properties and
  data, whose prose it would otherwise split at the first colon into a type and a text;
- private base classes of the package are not shown as bases;
- a sentinel default ("not given") shows as ``...``, not as ``<object object at ...>``;
- a ParamSpec's ``*args: P.args, **kwargs: P.kwargs`` are shown as written (see ``Unevaluated``);
- at the end of the build, every public name (``__all__`` of the package and of its public
  modules) must have been documented, or the build fails.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from sphinx.application import Sphinx
from sphinx.ext.napoleon import _process_docstring as napoleon_process_docstring
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

# The modules whose every public name the reference must document.
PUBLIC_MODULES = ("asyncfork", "asyncfork.dask", "asyncfork.otel", "asyncfork.progress")


class Unevaluated:
    """Stands for the ParamSpec ``P`` when autodoc evaluates an overload's annotations.

    Sphinx spells ``P.args`` as ``~typing.~P``. Through ``autodoc_type_aliases`` this
    object is found first for the name ``P``; every annotation that uses it then fails
    to evaluate (``NameError`` or ``TypeError``, which Sphinx expects) and is shown as
    the source writes it: ``func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs``.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # pickling and copying look for dunder methods
            raise AttributeError(name)
        raise NameError(name)

    def __reduce__(self) -> str:
        return "UNEVALUATED"  # pickled by name: Sphinx pickles its configuration


UNEVALUATED = Unevaluated()


def _napoleon_except_attributes(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    if what not in {"attribute", "data", "property"}:
        napoleon_process_docstring(app, what, name, obj, options, lines)


def _public_bases(app: Sphinx, name: str, obj: object, options: object, bases: list[type]) -> None:
    bases[:] = [b for b in bases if not getattr(b, "__module__", "").startswith("asyncfork._")]


def _readable_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    if signature is not None:
        signature = re.sub(r"\s*=\s*<object object>", " = ...", signature)
    return signature, return_annotation


def _check_every_public_name(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None:
        return
    documented = set(app.env.domains.python_domain.objects)
    missing = [
        f"{module}.{name}"
        for module in PUBLIC_MODULES
        for name in importlib.import_module(module).__all__
        if f"{module}.{name}" not in documented
    ]
    if missing:  # a warning, so an error under -W (`make docs`)
        LOGGER.warning(
            "public names missing from the API reference (docs/api.md): %s; document each "
            "there (an autofunction or autoclass directive in its section)",
            ", ".join(missing),
        )


def setup(app: Sphinx) -> dict[str, Any]:
    """Replace napoleon's docstring hook with the one above, and connect the others."""
    app.setup_extension("sphinx.ext.autodoc")
    app.setup_extension("sphinx.ext.napoleon")
    for listener in list(app.events.listeners["autodoc-process-docstring"]):
        if listener.handler is napoleon_process_docstring:
            app.disconnect(listener.id)
    app.connect("autodoc-process-docstring", _napoleon_except_attributes)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-process-signature", _readable_signature)
    app.connect("build-finished", _check_every_public_name)
    app.config.autodoc_type_aliases = {"P": UNEVALUATED}
    return {"parallel_read_safe": True, "parallel_write_safe": True}
