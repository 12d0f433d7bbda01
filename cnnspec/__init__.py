"""cnnspec: a compiler for convolutional network architectures.

`load(path_or_text) -> Spec` parses, elaborates and checks a `.cnn` spec; a bad spec
raises `SpecError` carrying located diagnostics. The pipeline, one module per stage:
parse -> elaborate -> check -> backends (summary, and later torch and graphviz).
"""

from .diagnostics import Diagnostic, SpecError

__version__ = "0.1.0"
__all__ = ["Diagnostic", "Spec", "SpecError", "load", "__version__"]


def load(source, *, network=None, **params):
    """Parse, elaborate and check a spec given as a path or as text -> `Spec`."""
    from .api import load as _load

    return _load(source, network=network, **params)


def __getattr__(name):
    if name == "Spec":
        from .api import Spec

        return Spec
    raise AttributeError(name)
