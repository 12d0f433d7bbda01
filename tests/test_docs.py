"""Every spec shown in the documentation is a spec that works.

Fenced blocks in docs/*.md and README.md, by their info string:

- ```cnn           a complete spec: `cnnspec.load` must accept it.
- ```cnn-error     a complete spec that must be *refused*; the block says with which
                   code in a line `# expect-error: E0301`.
- ```cnn-fragment  a piece of a spec (not checked).

Inside ```cnn blocks, comment lines make the prose's numbers testable:

- `# expect: params = 41,434, macs = 483,328` -- each `key = value` is compared
  with the loaded spec. Keys: params, inference_params, macs, activation_bytes
  (integers, `,` and `_` allowed), output_shape (`672x28x28` or `10`).
- `# expect-names: layer1.0.conv1, layer1.0.add` -- these layer names exist.
- `# expect-facts: NAME rf=7 shape=64x56x56 params=9408 macs=118013952` -- facts of
  one layer (rf is the receptive field height, which must equal its width).
- `# file: blocks/basic.cnn` as the FIRST line: the block is a library file, not a
  network. It is written at that path (relative to a temporary folder) before the
  other blocks of the same document are loaded from files in that folder, so their
  `import "blocks/basic.cnn"` resolves. Every library file must be imported by some
  block of its document.

A ```json block directly after the line `<!-- summary-json: NAME -->` must equal the
`summary --json` output of the ```cnn block whose network is called NAME.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import cnnspec

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

_FENCE = re.compile(r"^```([A-Za-z-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_FILE = re.compile(r"\A#\s*file:\s*(\S+)\s*\n")
_NETWORK = re.compile(r"^\s*network\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)


def _blocks(path: Path):
    """(kind, text, line, preceding text) of every fenced block in a Markdown file."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip().rsplit("\n", 1)[-1]
        found.append((match.group(1), match.group(2), line, before))
    return found


def _cases():
    for doc in DOCS:
        for kind, text, line, _ in _blocks(doc):
            if kind in ("cnn", "cnn-error"):
                yield pytest.param(doc, kind, text,
                                   id=f"{doc.relative_to(ROOT)}:{line}")


def _library(doc: Path, folder: Path) -> dict[str, str]:
    files = {}
    for kind, text, _, _ in _blocks(doc):
        match = _FILE.match(text) if kind == "cnn" else None
        if match:
            target = folder / match.group(1)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            files[match.group(1)] = text
    return files


def _load(doc: Path, text: str, folder: Path):
    _library(doc, folder)
    path = folder / "example.cnn"
    path.write_text(text, encoding="utf-8")
    return cnnspec.load(path)


def _number(text: str) -> int:
    return int(text.replace(",", "").replace("_", ""))


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip().split("x"))


def _check_expectations(spec, text: str) -> None:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# expect:"):
            body = line.removeprefix("# expect:")
            for key, value in re.findall(r"(\w+)\s*=\s*([0-9x,_]+?)(?=,\s*\w+\s*=|$)",
                                         body.strip()):
                if key == "output_shape":
                    assert spec.output_shape == _shape(value), line
                else:
                    assert getattr(spec, key) == _number(value), \
                        f"{line}: found {getattr(spec, key):,}"
        elif line.startswith("# expect-names:"):
            names = [n.strip() for n in line.removeprefix("# expect-names:").split(",")]
            missing = [n for n in names if n not in spec.layer_names]
            assert not missing, f"{missing} not among {spec.layer_names}"
        elif line.startswith("# expect-facts:"):
            name, *pairs = line.removeprefix("# expect-facts:").split()
            facts = spec.facts(name)
            for pair in pairs:
                key, value = pair.split("=")
                if key == "rf":
                    assert facts.receptive_field == (int(value),) * 2, (line, facts)
                elif key == "shape":
                    assert facts.shape == _shape(value), (line, facts)
                else:
                    assert getattr(facts, key) == _number(value), (line, facts)


@pytest.mark.parametrize("doc, kind, text", list(_cases()))
def test_documented_spec(doc, kind, text, tmp_path):
    if _FILE.match(text):
        name = _FILE.match(text).group(1)
        importers = [t for k, t, _, _ in _blocks(doc)
                     if k == "cnn" and not _FILE.match(t) and f'"{name}"' in t]
        assert importers, f"library file {name} is imported by no example"
        return
    if kind == "cnn-error":
        expected = re.search(r"#\s*expect-error:\s*(E\d{4})", text)
        assert expected, "a cnn-error block names its code: # expect-error: E0301"
        with pytest.raises(cnnspec.SpecError) as raised:
            _load(doc, text, tmp_path)
        assert expected.group(1) in str(raised.value)
        return
    spec = _load(doc, text, tmp_path)
    _check_expectations(spec, text)


def _json_cases():
    for doc in DOCS:
        blocks = _blocks(doc)
        for kind, text, line, before in blocks:
            match = re.fullmatch(r"<!--\s*summary-json:\s*(\w+)\s*-->", before.strip())
            if kind == "json" and match:
                yield pytest.param(doc, match.group(1), text,
                                   id=f"{doc.relative_to(ROOT)}:{line}")


@pytest.mark.parametrize("doc, network, text", list(_json_cases()))
def test_documented_summary_json(doc, network, text, tmp_path):
    sources = [t for k, t, _, _ in _blocks(doc)
               if k == "cnn" and network in _NETWORK.findall(t)]
    assert sources, f"no ```cnn block defines network {network}"
    spec = _load(doc, sources[0], tmp_path)
    assert json.loads(text) == json.loads(spec.summary().model_dump_json())


def test_docs_have_examples():
    assert any(kind == "cnn" for doc in DOCS for kind, *_ in _blocks(doc))


def test_errors_page_shows_the_real_diagnostics():
    """docs/errors.md quotes each example's output; it must be what cnnspec prints."""
    import importlib.util

    script = ROOT / "docs" / "refresh_errors.py"
    spec = importlib.util.spec_from_file_location("refresh_errors", script)
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    page = refresh.PAGE.read_text(encoding="utf-8")
    assert refresh.stale(page) == [], "run docs/refresh_errors.py"
