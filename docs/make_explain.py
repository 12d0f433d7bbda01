"""Generate docs/explain.md: what `cnnspec explain` shows, with its real output for
AlexNet's conv1, a join, and VGG-16 as a markdown table, checked against the CS231n
lecture's layer-by-layer VGG-16 table (whose totals are recomputed here).

Run:  .venv/bin/python docs/make_explain.py          (rewrites docs/explain.md)
      .venv/bin/python docs/make_explain.py --check  (exit 1 if it is out of date)

Every number below is computed when the script runs: the outputs are those of
`cnnspec explain`, and the lecture's sums are added up from its own per-layer figures
(LECTURE). tests/test_explain.py fails while docs/explain.md lags.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))  # _generated.py, also when loaded from a test

from _generated import write_or_check  # noqa: E402

import cnnspec  # noqa: E402
from cnnspec.analyses.explain.render import markdown, renderables  # noqa: E402

OUTPUT = ROOT / "docs" / "explain.md"

# The CS231n lecture's VGG-16 table (Stanford CS231n, "CNN Architectures"; the same
# rows are in the course notes' VGGNet case study): per row its name, the activation
# volume H x W x C, the memory figure it prints, and its parameter product (weights
# only, no biases) with the figure it prints.
LECTURE = [
    ("INPUT", (224, 224, 3), "150K", (), 0),
    ("CONV3-64", (224, 224, 64), "3.2M", (3, 3, 3, 64), 1_728),
    ("CONV3-64", (224, 224, 64), "3.2M", (3, 3, 64, 64), 36_864),
    ("POOL2", (112, 112, 64), "800K", (), 0),
    ("CONV3-128", (112, 112, 128), "1.6M", (3, 3, 64, 128), 73_728),
    ("CONV3-128", (112, 112, 128), "1.6M", (3, 3, 128, 128), 147_456),
    ("POOL2", (56, 56, 128), "400K", (), 0),
    ("CONV3-256", (56, 56, 256), "800K", (3, 3, 128, 256), 294_912),
    ("CONV3-256", (56, 56, 256), "800K", (3, 3, 256, 256), 589_824),
    ("CONV3-256", (56, 56, 256), "800K", (3, 3, 256, 256), 589_824),
    ("POOL2", (28, 28, 256), "200K", (), 0),
    ("CONV3-512", (28, 28, 512), "400K", (3, 3, 256, 512), 1_179_648),
    ("CONV3-512", (28, 28, 512), "400K", (3, 3, 512, 512), 2_359_296),
    ("CONV3-512", (28, 28, 512), "400K", (3, 3, 512, 512), 2_359_296),
    ("POOL2", (14, 14, 512), "100K", (), 0),
    ("CONV3-512", (14, 14, 512), "100K", (3, 3, 512, 512), 2_359_296),
    ("CONV3-512", (14, 14, 512), "100K", (3, 3, 512, 512), 2_359_296),
    ("CONV3-512", (14, 14, 512), "100K", (3, 3, 512, 512), 2_359_296),
    ("POOL2", (7, 7, 512), "25K", (), 0),
    ("FC", (1, 1, 4096), "4096", (7, 7, 512, 4096), 102_760_448),
    ("FC", (1, 1, 4096), "4096", (4096, 4096), 16_777_216),
    ("FC", (1, 1, 1000), "1000", (4096, 1000), 4_096_000),
]
LECTURE_MEMORY = "TOTAL memory: 24M * 4 bytes ~= 96MB / image (only forward! ~*2 for bwd)"
LECTURE_PARAMS = "TOTAL params: 138M parameters"


def _terminal(path: Path, *layers: str) -> str:
    """What `cnnspec explain PATH LAYER...` prints (piped: 200 columns, no colour)."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=200, highlight=False, color_system=None)
    for item in renderables(cnnspec.load(path).explain(list(layers) or None)):
        console.print(item)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def _shorthand(text: str) -> float:
    return float(text[:-1]) * {"K": 1e3, "M": 1e6}[text[-1]] if text[-1] in "KM" \
        else float(text)


def _lecture_check(vgg) -> str:
    """The lecture's rows against ours, then its totals recomputed."""
    explanation = vgg.explain()
    records = {kind: [r for r, n in zip(explanation.records, vgg.graph.nodes[1:])
                      if n.op.op == kind] for kind in ("conv", "maxpool", "linear")}
    ours = {"CONV": iter(records["conv"]), "POOL": iter(records["maxpool"]),
            "FC": iter(records["linear"])}
    rows, memory, stated_memory, weights = [], 0, 0.0, 0
    for name, (h, w, c), shown, factors, stated in LECTURE:
        values = h * w * c
        product = math.prod(factors) if factors else 0
        if product != stated:
            raise SystemExit(f"the lecture's {name} row: {factors} is not {stated}")
        if abs(_shorthand(shown) - values) > 0.05 * values:
            raise SystemExit(f"the lecture's {name} row: {shown} is not {values:,}")
        if name == "INPUT":
            mine, our_values, our_weights = "input", math.prod(vgg.input_shape), 0
        else:
            record = next(ours[next(k for k in ours if name.startswith(k))])
            mine, our_values = record.name, record.value("values")
            our_weights = record.value("weights")
        if (our_values, our_weights) != (values, product):
            raise SystemExit(f"the lecture's {name} row does not match `{mine}`")
        memory, stated_memory, weights = memory + values, stated_memory + _shorthand(
            shown), weights + product
        formula = f"({'*'.join(map(str, factors[:-1]))})*{factors[-1]}" if len(
            factors) == 4 and name != "FC" else "*".join(map(str, factors))
        rows.append(f"| {name} | `{h}*{w}*{c}` = {values:,} | {shown} | "
                    f"{f'`{formula}` = {product:,}' if factors else '0'} | `{mine}` | "
                    f"{our_values:,} | {our_weights:,} |")
    totals = explanation.totals
    ours_values, ours_params = totals.value("values"), totals.params
    relu = sum(r.value("values") for r, n in zip(explanation.records, vgg.graph.nodes[1:])
               if n.op.op == "relu")
    other = ours_values - (memory - math.prod(vgg.input_shape)) - relu
    claimed_memory, claimed_params = 24e6, 138e6  # the lecture's "24M", "138M"
    memory_adds_up = round(memory / 1e6) == round(claimed_memory / 1e6)
    params_add_up = round(weights / 1e6) == round(claimed_params / 1e6)
    head = ["| Lecture row | Memory, recomputed | Its figure | Weights, recomputed "
            "| Our layer | Our values | Our weights |",
            "|---|---|---|---|---|---|---|"]
    body = [
        "",
        "Every row's own arithmetic is right (each printed figure rounds its product, "
        "each weight count is its product), and each row matches our layer exactly, "
        "values and weights. Added up:",
        "",
        f"- **Memory.** The rows sum to **{memory:,} values** ({memory / 1e6:.1f}M; "
        f"{stated_memory / 1e6:.2f}M from the rounded figures as printed), so "
        f"{memory:,} × 4 bytes = **{memory * 4:,} bytes ≈ {memory * 4 / 1e6:.0f} MB** "
        f"({memory * 4 / 2**20:.1f} MiB) per image. The lecture's total, "
        f"\"{LECTURE_MEMORY}\", "
        + ("**matches**." if memory_adds_up else
           f"**does not add up**: 24M is {claimed_memory / memory:.2f} times the sum of "
           f"its own rows, and 96 MB is {96e6 / (memory * 4):.2f} times "
           f"{memory * 4 / 1e6:.0f} MB.")
        + " (The \"~*2 for bwd\" remark is an estimate, not a sum, and is not checked "
        "here.)",
        f"- **Parameters.** The rows sum to **{weights:,} weights**; the lecture's "
        f"\"{LECTURE_PARAMS}\" "
        + ("**matches** it." if params_add_up else "**does not match** it.")
        + " With the "
        f"{ours_params - weights:,} biases the lecture leaves out, the network has "
        f"{ours_params:,} parameters (torchvision's `vgg16` count), still 138M.",
        f"- **Our memory total** is {ours_values:,} values "
        f"({ours_values * 4 / 2**20:.1f} MiB), higher than the lecture's rows because "
        "cnnspec counts every layer's output (docs/costs.md, section 4): the lecture's "
        f"{memory - math.prod(vgg.input_shape):,} (its rows without the input, which "
        f"we do not count) + {relu:,} for the ReLU outputs (each conv and fc output "
        f"again) + {other:,} for the adaptive pool, the flatten and the dropouts = "
        f"{memory - math.prod(vgg.input_shape) + relu + other:,}.",
    ]
    return "\n".join(head + rows + body)


def render() -> str:
    alexnet, vgg16 = ROOT / "specs" / "alexnet.cnn", ROOT / "specs" / "vgg16.cnn"
    alex = cnnspec.load(alexnet)
    conv1 = alex.explain("conv1").records[0]
    vgg = cnnspec.load(vgg16)
    python = "\n".join([
        'spec = cnnspec.load("specs/alexnet.cnn")',
        'conv1 = spec.explain("conv1").records[0]',
        *(f'conv1.get("{key}").formula, conv1.get("{key}").value'
          f'   # {conv1.get(key).formula!r}, {conv1.get(key).value!r}'
          for key in ("height", "params", "macs", "values", "rf_h")),
    ])
    parts = [
        "# `cnnspec explain`: every number with its arithmetic",
        "",
        "<!-- Generated by docs/make_explain.py; do not edit. "
        "Run `.venv/bin/python docs/make_explain.py`. -->",
        "",
        "`cnnspec summary` prints each layer's numbers; `cnnspec explain` shows how each "
        "one is computed, the way lecture notes do it by hand: the formula with the "
        "numbers substituted, then the result. The numbers are the checker's, the same "
        "the summary prints (one computation, two views), and every formula evaluates "
        "to its number: tests/test_explain.py checks both for every layer of every spec "
        "in specs/. The conventions (what counts as a parameter, a MAC, memory) are "
        "those of [docs/costs.md](costs.md).",
        "",
        "```",
        "cnnspec explain FILE [LAYER ...]   every layer, or the named ones; a block or group",
        "                                   name (inception3a, features) gives its layers,",
        "                                   then their sums",
        "            [--depth N]            one record per block nested N deep, its layers summed",
        "            [--markdown]           a markdown table for lecture notes, with totals",
        "            [--set NAME=VALUE] [--network NAME]",
        "```",
        "",
        "An unknown name exits with status 2 and lists the closest names.",
        "",
        "## What it shows",
        "",
        "| Quantity | Formula |",
        "|---|---|",
        "| output size, per axis | conv and pools: `(in - k + 2*p) / s + 1`, with a dilated "
        "kernel spanning `d*(k-1)+1`; `floor(...)` when the stride does not divide "
        "(PyTorch floors), `ceil(...)` in ceil mode (less one when the last window would "
        "start in the padding); `padding=same` keeps the size; adaptive pools: the output "
        "size; `conv_transpose`: `(in - 1)*s - 2*p + d*(k - 1) + output_padding + 1`; "
        "`upsample`: `in*scale`; `flatten`: `c*h*w`; `concat`: the branches' channels "
        "added |",
        "| params | conv: `k_h*k_w*c_in*c_out + c_out` (`c_in/groups` when grouped; no "
        "`+ c_out` with `bias=false`); linear: `in*out + out` (`in` written `(c*h*w)` "
        "after a flatten); batchnorm and layernorm `2*c`; layer_scale `c`; else 0. "
        "*Weights only* is the same without the biases |",
        "| MACs | conv: `h_out*w_out*c_out * k_h*k_w*c_in`; dwconv: `h_out*w_out*c_out * "
        "k_h*k_w`; linear: `in*out` (pointwise: `h*w * in*out`); conv_transpose: "
        "`h_in*w_in*c_in * c_out*k_h*k_w`; else 0 |",
        "| memory | `c*h*w` values, times `bytes_per_element` (4 unless `option "
        "bytes_per_element`) |",
        "| receptive field, jump | windows: `rf = rf_in + (k-1)*j_in`, `jump = j_in*s`; "
        "joins: the widest branch (named); `global` once every output sees the whole "
        "input, after which the field stops (docs/costs.md, section 6) |",
        "",
        "Blocks (`--depth N`, or named) sum their layers' parameters, MACs and memory, "
        "and take the widest layer's receptive field, as `summary --depth` does.",
        "",
        "## AlexNet's conv1",
        "",
        "```",
        "$ cnnspec explain specs/alexnet.cnn conv1",
        _terminal(alexnet, "conv1"),
        "```",
        "",
        "The same from Python: `Spec.explain` returns the records "
        "(`cnnspec.analyses.explain.Explanation`), one per layer, each quantity with its formula "
        "text and its value:",
        "",
        "```python",
        python,
        "```",
        "",
        "## A join",
        "",
        "A concat's channels are its branches' channels added; its receptive field is "
        "its widest branch's, which it names:",
        "",
        "```",
        "$ cnnspec explain specs/googlenet.cnn inception3a.concat",
        _terminal(ROOT / "specs" / "googlenet.cnn", "inception3a.concat"),
        "```",
        "",
        "## VGG-16 for lecture notes",
        "",
        "`--markdown` prints a table in the style of the CS231n lecture's layer-by-layer "
        "VGG-16 table (\"memory: 224\\*224\\*64=3.2M, params: (3\\*3\\*3)\\*64 = 1,728\"). "
        "The lecture counts weights without biases; the table gives both, ours with the "
        "biases and the weights alone. `cnnspec explain specs/vgg16.cnn --markdown` "
        "prints:",
        "",
        markdown(vgg.explain()).rstrip(),
        "",
        "## The lecture's totals, checked",
        "",
        "The lecture's table, row by row, recomputed and set against ours:",
        "",
        _lecture_check(vgg),
        "",
    ]
    return "\n".join(parts)


def main() -> int:
    return write_or_check(__file__, __doc__.splitlines()[0], OUTPUT, render)


if __name__ == "__main__":
    sys.exit(main())
