"""The Python entry point: `load(path_or_text) -> Spec`.

Takes: a `.cnn` path or spec text, optionally a network name and parameter values.
Returns: a `Spec` (parsed, imports resolved, elaborated, checked) whose side table
answers every cost question. Raises `SpecError` for any user mistake.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .frontend import syntax as S
from .frontend.check import Facts, ShapeTable
from .diagnostics import SourceFile, Span, SpecError, did_you_mean, error
from .frontend.elaborate import elaborate
from .ir import Graph
from .frontend.parse import parse


class Spec:
    """A checked network: the IR graph plus the facts of every node."""

    def __init__(self, graph: Graph, table: ShapeTable, path: str | None = None,
                 source=None, overrides: dict | None = None):
        self.graph = graph
        self.table = table
        self.path = path
        self.source = source if source is not None else path  # what load() was given
        self.overrides = dict(overrides or {})  # the parameters the caller set

    def with_params(self, **params) -> "Spec":
        """The same network loaded again with some parameters set (e.g. classes=5)."""
        return load(self.source, network=self.name, **{**self.overrides, **params})

    # -- headline numbers
    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.table[0].shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.table[self.graph.outputs[0].node].shape

    @property
    def params(self) -> int:
        """Every parameter the built module holds, auxiliary heads included."""
        return sum(f.params for f in self.table.facts)

    @property
    def trainable_params(self) -> int:
        """Parameters outside `frozen { }`: what fine-tuning updates."""
        return sum(f.params for n, f in self._layers() if not n.frozen)

    @property
    def inference_params(self) -> int:
        """Parameters used in eval mode: auxiliary heads left out."""
        return sum(f.params for n, f in self._layers() if not n.training_only)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one eval-mode forward pass of one image."""
        return sum(f.macs for n, f in self._layers() if not n.training_only)

    @property
    def activation_bytes(self) -> int:
        """Bytes of every layer output in one eval-mode forward pass of one image."""
        size = self.graph.options.bytes_per_element
        return size * sum(f.elements for n, f in self._layers() if not n.training_only)

    @property
    def recipe(self):
        return self.graph.recipe

    def facts(self, name: str) -> Facts:
        """The checked facts of the layer called `name` (a dotted path)."""
        for node in self.graph.nodes:
            if node.name == name:
                return self.table[node.id]
        raise KeyError(f"no layer {name!r} in {self.name}; "
                       + (did_you_mean(name, self.layer_names) or "see .layer_names"))

    @property
    def layer_names(self) -> list[str]:
        return [node.name for node in self.graph.nodes[1:]]

    def _layers(self):
        return ((n, self.table[n.id]) for n in self.graph.nodes[1:])

    def to_networkx(self):
        """The layer DAG as a `networkx.DiGraph`, keyed by layer name, with each
        layer's op, label, params, MACs, output shape, receptive field and block path."""
        from .diagrams.graph import to_networkx

        return to_networkx(self)

    def _repr_svg_(self):
        """Jupyter shows a Spec as its diagram; None (plain repr) without Graphviz."""
        try:
            from .diagrams import RenderError, svg
        except ImportError:
            return None
        try:
            return svg(self)
        except RenderError:
            return None

    def explorer_html(self, depth: int | None = 1, **options) -> str:
        """The interactive explorer (`cnnspec render SPEC -o arch.html`) as one
        self-contained HTML page: blocks collapsed `depth` deep that open by click,
        pan and zoom, search, each node's facts. `options`: rankdir, shapes, theme.
        Needs Graphviz's `dot` (render.RenderError without it)."""
        from .diagrams import explorer_html

        return explorer_html(self, depth, **options)

    def summary(self):
        from .analyses.summary import summarize

        return summarize(self)

    def train_memory(self, batch: int, optimizer: str = "sgd", amp: str | None = None,
                     fit: int | str | None = None, device: str = "cpu"):
        """The bytes one training step of `batch` images needs: parameters, gradients,
        optimizer state (sgd: none, sgd_momentum: one buffer, adam: two), batchnorm
        buffers and the activations autograd keeps, per layer and in total; `amp`
        (None, "bf16", "fp16") runs conv and linear in half precision. With `fit`
        (bytes, or a size such as "24GiB"), `.max_batch` is the largest batch whose
        total fits. `device` picks the rules that differ ("cpu", the measured ones,
        or "cuda"). A `memory.TrainMemory`; docs/costs.md, "Training memory"."""
        from .analyses.memory import parse_size, plan

        if isinstance(fit, str):
            fit = parse_size(fit)
        return plan(self, batch, optimizer=optimizer, amp=amp, fit=fit, device=device)

    def explain(self, layer=None, *, depth: int | None = None):
        """Every number with its arithmetic (`cnnspec explain`): for each layer, or for
        `layer` (a name, a block or group name, or a list of them), the formulas with
        the numbers substituted and their values -> `explain.Explanation`. `depth`
        sums block instances nested that deep into one record each."""
        from .analyses.explain import explain

        return explain(self, layer, depth=depth)

    def __repr__(self) -> str:
        return (f"<Spec {self.name}: {len(self.graph.nodes) - 1} layers, "
                f"{self.params:,} params, {self.macs:,} MACs>")


def load(source: str | os.PathLike, *, network: str | None = None, **params) -> Spec:
    """Parse, elaborate and check a spec given as a path or as text."""
    path, text = _read(source)
    return load_text(text, path, network=network, **params)


def load_text(text: str, path: str | os.PathLike | None = None, *,
              network: str | None = None, unsaved: Mapping[str, str] | None = None,
              **params) -> Spec:
    """`load` for text that is not (or not yet) what is saved at `path`, such as an
    editor's buffer: diagnostics name `path`, and `import`s resolve relative to it
    (to the working directory without a path). `unsaved` maps the real paths of other
    files to their editors' text, read instead of the disk when imported."""
    path = os.fspath(path) if path is not None else None
    modules = _Modules(unsaved)
    try:
        module = modules.load(text, path)
        chosen = _choose_network(module, network, path)
        graph, table = elaborate(chosen, modules.blocks, params, modules.recipes)
    except RecursionError:
        raise error("E0002", "the spec nests too deeply to follow", Span(
            SourceFile(path or "<string>", text), 1, 1, 1, 2),
            help="flatten deeply nested expressions or blocks") from None
    return Spec(graph, table, path, source=path if path else text, overrides=params)


def _read(source) -> tuple[str | None, str]:
    is_path = isinstance(source, os.PathLike) or (
        isinstance(source, str) and "\n" not in source and "{" not in source
        and (source.endswith(".cnn") or os.path.exists(source)))
    if not is_path:
        return None, str(source)
    path = os.fspath(source)
    try:
        return path, Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error("E0003", f"no such spec file: {path}", None) from None
    except UnicodeDecodeError as problem:
        raise error("E0003", f"cannot read {path}", None,
                    label=f"byte {problem.start} is not UTF-8 text",
                    help="save the spec as UTF-8") from None
    except OSError as problem:
        raise error("E0003", f"cannot read {path}", None,
                    label=problem.strerror or type(problem).__name__) from None


def _choose_network(module: S.Module, wanted: str | None, path) -> S.Definition:
    networks = {n.name: n for n in module.networks}
    if wanted is not None:
        if wanted not in networks:
            raise error("E0213", f"no network `{wanted}` in {path or 'the spec'}", None,
                        label="networks here: " + (", ".join(networks) or "none"),
                        help=did_you_mean(wanted, networks))
        return networks[wanted]
    if len(networks) == 1:
        return module.networks[0]
    if not networks:
        raise error("E0213", f"{path or 'the spec'} defines no network", None,
                    label=("it has only blocks" if module.blocks else
                           "it has only recipes" if module.recipes else "it is empty"),
                    help="add `network name { input 3x224x224 ... }`")
    raise error("E0213", f"{path or 'the spec'} defines {len(networks)} networks", None,
                label="choose one: " + ", ".join(networks),
                help="pass network=NAME (CLI: --network NAME)")


class _Modules:
    """Parses a file and everything it imports, once each; collects the blocks and
    the recipes."""

    def __init__(self, unsaved: Mapping[str, str] | None = None):
        self.unsaved = unsaved or {}  # real path -> an editor's text for that file
        self.blocks: dict[str, S.Definition] = {}
        self.recipes: dict[str, S.Definition] = {}
        self._done: dict[str, S.Module] = {}
        self._stack: list[str] = []

    def load(self, text: str, path: str | None) -> S.Module:
        key = os.path.realpath(path) if path else "<string>"
        self._stack.append(key)
        module = parse(text, path or "<string>")
        self._done[key] = module
        base = Path(path).parent if path else Path.cwd()
        for imported in module.imports:
            self._import(imported, base)
        for block in module.blocks:
            self._define(block, self.blocks)
        for recipe in module.recipes:
            self._define(recipe, self.recipes)
        self._stack.pop()
        return module

    def _import(self, imported: S.Import, base: Path) -> None:
        target = base / imported.path
        key = os.path.realpath(target)
        if key in self._stack:
            raise error("E0210", f"`{imported.path}` imports itself in a cycle",
                        imported.span, label=" -> ".join(
                            Path(k).name for k in self._stack[self._stack.index(key):])
                        + f" -> {Path(key).name}")
        if key in self._done:
            return
        if key in self.unsaved:
            self.load(self.unsaved[key], str(target))
            return
        try:
            text = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as problem:
            raise error("E0210", f"cannot import `{imported.path}`", imported.span,
                        label=f"looked for {target}: "
                        + (problem.strerror or str(problem) if isinstance(
                            problem, OSError) else "not UTF-8 text")) from None
        self.load(text, str(target))

    def _define(self, definition: S.Definition, known: dict[str, S.Definition]) -> None:
        earlier = known.get(definition.name)
        if earlier is not None and earlier is not definition:
            raise error("E0212", f"{definition.kind} `{definition.name}` is defined twice",
                        definition.name_span,
                        notes=(f"first defined at {earlier.name_span}",))
        known[definition.name] = definition


__all__ = ["Spec", "SpecError", "load", "load_text"]
