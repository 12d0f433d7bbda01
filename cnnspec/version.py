"""The package's version, in a module of its own so that every layer may import it
(the package root imports every stage)."""

__version__ = "0.1.0"
