"""Every spec shown in the documentation is a spec that works.

Fenced blocks in docs/*.md and README.md, by their info string:

- ```cnn           a complete spec: `cnnspec.load` must accept it.
- ```cnn-error     a complete spec that must be *refused*; the block says with which
                   code in a line `# expect-error: E0301`, which must be the code of
                   the FIRST diagnostic.
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

Every expectation line is parsed in full: a line the checker cannot read (a missing
`=`, an unknown key, a malformed number, a near miss such as `#expect:` or
`# expect-fact:`, an expectation after code on the same line or in a block that is
never loaded) fails instead of silently checking nothing.

A ```json block directly after the line `<!-- summary-json: NAME -->` must equal the
`summary --json` output of the ```cnn block whose network is called NAME.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import pytest

import cnnspec

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

_FENCE = re.compile(r"^```([A-Za-z-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_FILE = re.compile(r"\A#\s*file:\s*(\S+)\s*\n")
_NETWORK = re.compile(r"^\s*network\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


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


# Every expectation line is parsed in full; a line this checker cannot read fails
# (it would otherwise check nothing and pass).
_INTEGER = r"(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:_\d{3})+|\d+)"
_SHAPE = r"\d+(?:x\d+)*"
_SUMMARY_KEYS = {"params": _INTEGER, "inference_params": _INTEGER, "macs": _INTEGER,
                 "activation_bytes": _INTEGER, "output_shape": _SHAPE}
_FACT_KEYS = {"rf": r"\d+", "shape": _SHAPE, "params": _INTEGER, "macs": _INTEGER}
_NAME = r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*"
_PREFIXES = ("# expect:", "# expect-names:", "# expect-facts:", "# expect-error:")
# Anything that looks like an expectation: `#expect:`, `# expect-fact:`, `# Expect`...
_LOOKS_LIKE = re.compile(r"#\s*expect(?:[-\w]*\s*:|\b)", re.IGNORECASE)


class Expectation(NamedTuple):
    kind: str  # "expect", "expect-names", "expect-facts" or "expect-error"
    line: str
    name: str = ""  # the layer of an expect-facts line
    pairs: tuple = ()  # (key, value text) pairs; the names of an expect-names line


def _unreadable(line: str, why: str):
    raise AssertionError(f"cannot parse expectation line {line!r}: {why}")


def _pairs(line: str, body: str, keys: dict, separator: str) -> tuple:
    parts = re.split(separator, body.strip()) if body.strip() else []
    if not parts:
        _unreadable(line, "it names nothing to check")
    pairs = []
    for part in parts:
        match = re.fullmatch(r"(\w+)\s*=\s*(\S+)" if separator == r"\s+"
                             else r"(\w+)\s*=\s*(.+?)\s*", part)
        if not match:
            _unreadable(line, f"{part!r} is not `key = value`")
        key, value = match.groups()
        if key not in keys:
            _unreadable(line, f"unknown key {key!r} (known: {', '.join(keys)})")
        if not re.fullmatch(keys[key], value):
            _unreadable(line, f"{value!r} is not a value for {key}")
        pairs.append((key, value))
    return tuple(pairs)


def _parse_expectations(text: str, kind: str = "cnn") -> list[Expectation]:
    """The expectation lines of one fenced block, each parsed in full."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        prefix = next((p for p in _PREFIXES if line.startswith(p)), None)
        if prefix is None:
            if _LOOKS_LIKE.search(line):
                _unreadable(line, "not one of " + ", ".join(_PREFIXES)
                            + " at the start of its own line")
            continue
        name, body = prefix[2:-1], line[len(prefix):]
        if (name == "expect-error") != (kind == "cnn-error"):
            _unreadable(line, f"`{prefix}` does not belong in a ```{kind} block")
        if name == "expect":
            found.append(Expectation(name, line, pairs=_pairs(
                line, body, _SUMMARY_KEYS, r",\s*(?=\w+\s*=)")))
        elif name == "expect-facts":
            layer, _, rest = body.strip().partition(" ")
            if not re.fullmatch(_NAME, layer):
                _unreadable(line, "it must start with a layer name")
            found.append(Expectation(name, line, layer,
                                     _pairs(line, rest, _FACT_KEYS, r"\s+")))
        elif name == "expect-names":
            names = tuple(n.strip() for n in body.split(","))
            if not all(re.fullmatch(_NAME, n) for n in names):
                _unreadable(line, "a comma-separated list of layer names")
            found.append(Expectation(name, line, pairs=names))
        else:
            if not re.fullmatch(r"E\d{4}", body.strip()):
                _unreadable(line, "one code, like E0301")
            found.append(Expectation(name, line, pairs=(body.strip(),)))
    return found


def _check_expectations(spec, text: str) -> None:
    for expectation in _parse_expectations(text):
        line = expectation.line
        if expectation.kind == "expect":
            for key, value in expectation.pairs:
                if key == "output_shape":
                    assert spec.output_shape == _shape(value), line
                else:
                    assert getattr(spec, key) == _number(value), \
                        f"{line}: found {getattr(spec, key):,}"
        elif expectation.kind == "expect-names":
            missing = [n for n in expectation.pairs if n not in spec.layer_names]
            assert not missing, f"{missing} not among {spec.layer_names}"
        elif expectation.kind == "expect-facts":
            facts = spec.facts(expectation.name)
            for key, value in expectation.pairs:
                if key == "rf":
                    assert facts.receptive_field == (int(value),) * 2, (line, facts)
                elif key == "shape":
                    assert facts.shape == _shape(value), (line, facts)
                else:
                    assert getattr(facts, key) == _number(value), (line, facts)


def _expected_error(text: str) -> str:
    codes = [e.pairs[0] for e in _parse_expectations(text, "cnn-error")]
    assert len(codes) == 1, "a cnn-error block names one code: # expect-error: E0301"
    return codes[0]


def _check_refusal(problem: cnnspec.SpecError, expected: str) -> None:
    """The FIRST diagnostic must carry the expected code (not merely mention it)."""
    found = problem.diagnostics[0].code
    assert found == expected, f"expected {expected}, the first error is {found}:\n{problem}"


@pytest.mark.parametrize("doc, kind, text", list(_cases()))
def test_documented_spec(doc, kind, text, tmp_path):
    if _FILE.match(text):
        name = _FILE.match(text).group(1)
        importers = [t for k, t, _, _ in _blocks(doc)
                     if k == "cnn" and not _FILE.match(t) and f'"{name}"' in t]
        assert importers, f"library file {name} is imported by no example"
        _parse_expectations(text)
        return
    if kind == "cnn-error":
        expected = _expected_error(text)
        with pytest.raises(cnnspec.SpecError) as raised:
            _load(doc, text, tmp_path)
        _check_refusal(raised.value, expected)
        return
    spec = _load(doc, text, tmp_path)
    _check_expectations(spec, text)


def test_no_expectations_in_unchecked_blocks():
    """An expectation in a block that is never loaded would check nothing."""
    for doc in DOCS:
        for kind, text, line, _ in _blocks(doc):
            if kind not in ("cnn", "cnn-error"):
                assert not _LOOKS_LIKE.search(text), \
                    f"{doc.relative_to(ROOT)}:{line}: ```{kind} block has an expectation"


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


# ---------------------------------------------------------------- the checker itself

_SPEC = "network t {\n    input 3x8x8\n    a: conv 16 k=3 p=1\n}\n"  # 448 params


@pytest.mark.parametrize("line", [
    "# expect: params 448",  # no `=`
    "# expect: params = 448 macs = 27,648",  # no comma between pairs
    "# expect: parms = 448",  # unknown key
    "# expect: params = 0.45k",  # not an integer
    "# expect: params = 44,8",  # misplaced thousands separator
    "# expect: output_shape = 16x8x",
    "# expect:",
    "# expect-facts: a",  # a layer and nothing to check
    "# expect-facts: a rf = 3",  # spaces around `=` split the pair
    "# expect-facts: a receptive_field=3",
    "# expect-facts: a shape=16x8x8,",
    "# expect-facts: rf=3",  # no layer name
    "# expect-names:",
    "# expect-names: a,, b",
    "#expect: params = 448",  # near misses of a prefix
    "# expect-fact: a rf=3",
    "# Expect: params = 448",
    "# expects: params = 448",
    "a: conv 16 k=3 p=1   # expect: params = 448",  # not on its own line
    "# expect-error: E0301",  # belongs in a cnn-error block
])
def test_checker_fails_on_a_line_it_cannot_parse(line):
    spec = cnnspec.load(_SPEC)
    with pytest.raises(AssertionError, match="cannot parse"):
        _check_expectations(spec, _SPEC + line + "\n")


@pytest.mark.parametrize("line", [
    "# expect: params = 449",
    "# expect: params = 448, macs = 1",  # the second pair is checked too
    "# expect: output_shape = 16x8x7",
    "# expect-facts: a rf=3 shape=16x8x8 params=447",
    "# expect-facts: a rf=5",
    "# expect-names: a, b",
])
def test_checker_fails_on_a_wrong_value(line):
    spec = cnnspec.load(_SPEC)
    with pytest.raises(AssertionError):
        _check_expectations(spec, _SPEC + line + "\n")


def test_checker_passes_true_lines_and_ignores_plain_comments():
    spec = cnnspec.load(_SPEC)
    _check_expectations(spec, _SPEC + "\n".join([
        "# expect: params = 448, macs = 27,648, output_shape = 16x8x8",
        "# expect: activation_bytes = 4_096",
        "# expect-facts: a rf=3 shape=16x8x8 params=448 macs=27648",
        "# expect-names: a",
        "# the expected output is 16x8x8",
        "# we expected 54.25 here",
    ]))
    assert [e.kind for e in _parse_expectations(
        "# expect: params = 1\n# expect-names: a, b.c\n")] == ["expect", "expect-names"]


def test_refusal_must_be_the_first_diagnostic():
    from cnnspec.diagnostics import Diagnostic, SpecError

    two = SpecError([Diagnostic("E0301", "first", None),
                     Diagnostic("E0304", "second, mentions E0302", None)])
    _check_refusal(two, "E0301")
    for wrong in ("E0304", "E0302", "E030"):
        with pytest.raises(AssertionError):
            _check_refusal(two, wrong)
    with pytest.raises(AssertionError, match="cannot parse"):
        _expected_error("# expect-error: 301\nnetwork n { input 1x1x1 }")
    with pytest.raises(AssertionError, match="names one code"):
        _expected_error("network n { input 1x1x1 }")
    with pytest.raises(AssertionError, match="names one code"):
        _expected_error("# expect-error: E0301\n# expect-error: E0302\n")
    assert _expected_error("# expect-error: E0308\nnetwork n {}") == "E0308"
