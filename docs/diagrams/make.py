"""Regenerate the diagrams in docs/diagrams/ (needs Graphviz's `dot`).

    .venv/bin/python docs/diagrams/make.py          # everything
    .venv/bin/python docs/diagrams/make.py charts   # the two comparison charts only

Each diagram is `cnnspec render SPEC -o OUT --depth N` at 144 dpi; comparison.png is
`cnnspec compare specs/*.cnn -o docs/diagrams/comparison.png` (top-1 against MACs,
from torchvision's weight metadata: needs torchvision, no download), and
comparison_cost.png the same library's MACs against parameters (the chart compare
draws when no accuracy is known).
"""

import sys
from pathlib import Path

import cnnspec
from cnnspec.analyses.compare import chart, compare
from cnnspec.diagrams import render

HERE = Path(__file__).resolve().parent
SPECS = HERE.parent.parent / "specs"

DIAGRAMS = [  # (spec, depth, output)
    ("googlenet", 1, "googlenet_depth1.png"),
    ("googlenet", 2, "googlenet_depth2.png"),
    ("resnet50", 1, "resnet50_depth1.png"),
    ("densenet121", 1, "densenet121_depth1.png"),
    ("resnet18", None, "resnet18.png"),
]


def main(charts_only: bool = False) -> None:
    for name, depth, out in [] if charts_only else DIAGRAMS:
        spec = cnnspec.load(SPECS / f"{name}.cnn")
        path = render(spec, HERE / out, depth=depth, dpi=144)
        print(f"wrote {path.relative_to(HERE.parent.parent)}")
    specs = [cnnspec.load(path) for path in sorted(SPECS.glob("*.cnn"))]
    for comparison, out in ((compare(specs, torchvision=True), "comparison.png"),
                            (compare(specs), "comparison_cost.png")):
        path = chart(comparison, HERE / out)
        print(f"wrote {path.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main(charts_only=sys.argv[1:] == ["charts"])
