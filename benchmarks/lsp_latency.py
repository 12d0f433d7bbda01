"""`cnnspec lsp` latency on the largest spec, over real JSON-RPC to a subprocess.

Run:  .venv/bin/python benchmarks/lsp_latency.py [--rounds 15] [--spec specs/X.cnn]

Takes the spec in specs/ with the most IR nodes (or --spec), starts `cnnspec lsp`
as an editor does and speaks Content-Length framed JSON-RPC to it
(`cnnspec.lsp.client`). Measures, median and max over --rounds:

- startup: process start to the `initialize` answer;
- hover: request to answer on a single layer (with explain's arithmetic), on a
  block call and on the network's name, the document checked and explained;
- diagnostics: a full round, didChange to the publishDiagnostics of that version
  (it includes the server's debounce, `DEBOUNCE`; "check" is the rest);
- hover during a check: didChange, then once the debounce has passed (the check
  has started on its thread) a hover every 5 ms until the diagnostics come. A
  server that checked on its event loop would answer none of them before the
  publish, each after up to a whole check; here they are answered throughout.

Results go to benchmarks/results/lsp_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cnnspec
from cnnspec.frontend import syntax as S
from cnnspec.lsp.client import Client
from cnnspec.lsp.server import DEBOUNCE
from cnnspec.frontend.parse import parse

RESULTS = ROOT / "benchmarks" / "results" / "lsp_latency.json"


def largest_spec() -> tuple[Path, int]:
    """The spec in specs/ whose checked network has the most IR nodes."""
    sizes = []
    for path in sorted((ROOT / "specs").glob("*.cnn")):
        try:
            sizes.append((len(cnnspec.load(path).graph.nodes), path))
        except cnnspec.SpecError:
            continue
    nodes, path = max(sizes)
    return path, nodes


def positions(path: Path) -> dict[str, tuple[int, int]]:
    """0-based positions of a single layer (the first statement that makes one, else
    `input`), a block call and the network's name."""
    module = parse(path.read_text(), str(path))
    network = module.networks[0]
    found = {"network name": (network.name_span.line - 1, network.name_span.column - 1)}
    stack, first = list(network.body), None
    while stack:
        statement = stack.pop(0)
        if type(statement) is S.InputStatement:
            first = (statement.span.line - 1, statement.span.column - 1)
        elif type(statement) is S.LayerStatement:
            unit = statement.items[0].unit
            start = (unit.span.line - 1, unit.span.column - 1)
            if type(unit) is S.Call and unit.parenthesized:
                found.setdefault("block call", start)
            elif type(unit) is S.Call and len(statement.items) == 1:
                found.setdefault("single layer", start)
            elif hasattr(unit, "body"):
                stack[:0] = list(unit.body)
    found.setdefault("single layer", first)
    return found


def stats(values: list[float]) -> dict:
    ms = [v * 1e3 for v in values]
    return {"median_ms": round(statistics.median(ms), 2), "max_ms": round(max(ms), 2),
            "rounds": len(ms)}


def hover_params(uri: str, where: tuple[int, int]) -> dict:
    return {"textDocument": {"uri": uri},
            "position": {"line": where[0], "character": where[1]}}


def measure(path: Path, rounds: int) -> dict:
    started = time.perf_counter()
    client = Client([sys.executable, "-m", "cnnspec", "lsp"], cwd=str(ROOT))
    try:
        client.initialize(ROOT)
        startup = time.perf_counter() - started
        text = path.read_text()
        opened = time.perf_counter()
        uri = client.open(path, text)
        arrived, first = client.wait_for("textDocument/publishDiagnostics", timeout=60)
        cold = arrived - opened
        where = positions(path)
        for place in where.values():  # waits for explain once, then it is made
            client.request("textDocument/hover", hover_params(uri, place), timeout=60)
        hovers = {name: [] for name in where}
        for _ in range(rounds):
            for name, place in where.items():
                sent = time.perf_counter()
                answer = client.request("textDocument/hover", hover_params(uri, place))
                hovers[name].append(time.perf_counter() - sent)
                assert answer, f"no hover at {name}"
        version, rounds_full, during, before = 1, [], [], 0
        for index in range(rounds):
            version += 1
            edited = text + ("\n# edited\n" if index % 2 == 0 else "")
            sent = time.perf_counter()
            client.change(uri, edited, version)
            arrived, _ = client.wait_for("textDocument/publishDiagnostics",
                                         lambda p, v=version: p.get("version") == v)
            rounds_full.append(arrived - sent)
            # let the explainer finish (a hover waits for it) before the next round
            client.request("textDocument/hover", hover_params(uri, where["single layer"]))
        for index in range(rounds):
            version += 1
            sent = time.perf_counter()
            client.change(uri, text + ("\n# again\n" if index % 2 == 0 else ""), version)
            time.sleep(DEBOUNCE + 0.005)
            answers = []
            while True:
                asked = time.perf_counter()
                key = client.send_request("textDocument/hover",
                                          hover_params(uri, where["block call"]))
                answered, _ = client.response(key)
                answers.append((answered, answered - asked))
                try:
                    published, _ = client.wait_for(
                        "textDocument/publishDiagnostics",
                        lambda p, v=version: p.get("version") == v, timeout=0.005)
                    break
                except TimeoutError:
                    pass
            inside = [latency for at, latency in answers if at < published]
            during.extend(inside)
            before += bool(inside)
            client.request("textDocument/hover", hover_params(uri, where["single layer"]))
        status = client.shutdown()
    finally:
        client.kill()
    checks = [r - DEBOUNCE for r in rounds_full]
    return {
        "spec": str(path.relative_to(ROOT)), "diagnostics": len(first["diagnostics"]),
        "debounce_ms": DEBOUNCE * 1e3, "startup": stats([startup]),
        "first_check": stats([cold]),
        "hover": {name: stats(values) for name, values in hovers.items()},
        "diagnostics_round": stats(rounds_full), "check_after_debounce": stats(checks),
        "hover_during_check": {**stats(during), "rounds_with_an_answer_before_publish":
                               f"{before}/{rounds}"},
        "exit_status": status,
    }


def table(result: dict) -> str:
    rows = [("startup (spawn to initialize)", result["startup"]),
            ("first check (didOpen to diagnostics)", result["first_check"])]
    rows += [(f"hover: {name}", values) for name, values in result["hover"].items()]
    rows += [("diagnostics round (didChange to publish)", result["diagnostics_round"]),
             (f"  of which check (round - {result['debounce_ms']:.0f} ms debounce)",
              result["check_after_debounce"]),
             ("hover during a check", result["hover_during_check"])]
    lines = [f"{'':44} {'median ms':>10} {'max ms':>9} {'n':>5}"]
    lines += [f"{name:44} {v['median_ms']:>10.1f} {v['max_ms']:>9.1f} {v['rounds']:>5}"
              for name, v in rows]
    lines.append(f"hovers answered before the diagnostics, rounds: "
                 f"{result['hover_during_check']['rounds_with_an_answer_before_publish']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--spec", type=Path, help="default: the largest in specs/")
    args = parser.parse_args()
    if args.spec:
        path = args.spec.resolve()
        nodes = len(cnnspec.load(path).graph.nodes)
    else:
        path, nodes = largest_spec()
    result = {"nodes": nodes, **measure(path, args.rounds),
              "python": platform.python_version(), "cpus": os.cpu_count()}
    print(f"{result['spec']}: {nodes:,} IR nodes, {args.rounds} rounds")
    print(table(result))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
