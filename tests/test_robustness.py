"""Robustness: no input, however broken or hostile, may crash, hang or exhaust cnnspec.

The contract (docs: DESIGN.md, "What a mistake looks like"): for any text,
`cnnspec.load` either returns a checked `Spec` or raises `cnnspec.SpecError` whose
every diagnostic points inside the file (1-based line and column) and renders to a
non-empty message. Any other exception, a hang or a memory blow-up is a cnnspec bug.

Three parts:
  * mutation fuzzing of the real specs in specs/ (Hypothesis, derandomized);
  * generated, syntactically plausible specs with hostile values (Hypothesis);
  * hostile inputs, each run in a subprocess with a timeout so a hang fails the
    test instead of hanging CI, and with the child's peak memory measured.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnspec
from cnnspec import SpecError

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SPEC_FILES = sorted(SPECS.glob("*.cnn"))

# Diagnostics about the file as a whole (too big, unreadable, no/several networks)
# may carry no span; every other diagnostic must point into the text.
FILE_LEVEL_CODES = {"E0001", "E0003", "E0213"}

HOSTILE_TIMEOUT_S = 20
MAX_RSS_BYTES = 1_500_000_000

FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------ the property


def _line_count(text: str) -> int:
    """Lines as a user (and the parser) counts them: separated by `\\n`."""
    return text.count("\n") + 1


def check_contract(text: str):
    """Load `text`; assert the robustness contract. Returns the Spec or the SpecError."""
    try:
        spec = cnnspec.load(text)
    except SpecError as err:
        rendered = str(err)
        assert rendered.strip(), "SpecError renders to an empty message"
        assert err.diagnostics, "SpecError carries no diagnostics"
        for diagnostic in err.diagnostics:
            assert diagnostic.code and diagnostic.message, diagnostic
            span = diagnostic.span
            if span is None:
                assert diagnostic.code in FILE_LEVEL_CODES, (
                    f"{diagnostic.code} has no location:\n{diagnostic.render()}")
                continue
            source_text = span.source.text
            if span.source.name == "<string>":
                assert source_text == text, "diagnostic quotes a different text"
            lines = _line_count(source_text)
            assert 1 <= span.line <= lines + 1, (
                f"line {span.line} outside 1..{lines}:\n{diagnostic.render()}")
            assert span.column >= 1, f"column {span.column}:\n{diagnostic.render()}"
            # The quoted line must be the user's own line number `span.line` (or its
            # start, where the line holds other break characters).
            if span.line <= lines:
                own = source_text.split("\n")[span.line - 1]
                assert own.startswith(span.source.line(span.line)), (
                    f"diagnostic at line {span.line} quotes {span.source.line(span.line)!r}"
                    f" but that line is {own!r}")
        return err
    # Success: the headline numbers must be computable.
    assert isinstance(spec.params, int) and spec.params >= 0
    assert isinstance(spec.macs, int) and spec.macs >= 0
    assert len(spec.graph.nodes) >= 1
    repr(spec)
    spec.summary()
    return spec


# ------------------------------------------------------------------ mutation fuzzing

_IMPORT = re.compile(r'^[ \t]*import[ \t]+"([^"\n]*)"[ \t]*$', re.M)


def _inline_imports(text: str) -> str:
    """Replace `import "blocks/x.cnn"` by that file's text, so a spec is one string."""
    def inline(match):
        return (SPECS / match.group(1)).read_text(encoding="utf-8").rstrip("\n")
    return _IMPORT.sub(inline, text)


SPEC_TEXTS = {p.name: _inline_imports(p.read_text(encoding="utf-8")) for p in SPEC_FILES}

VOCABULARY = [
    "{", "}", "(", ")", "->", "x", "*", ",", ":", "=", ";", "\n", " ", "#", ".",
    "residual", "concat", "add", "mean", "multiply", "dense", "gate", "aux", "repeat",
    "shortcut", "auto", "block", "network", "input", "let", "if", "else", "option",
    "train", "import", "as", "in", "in.c", "in.h", "in.w", "in.q", "0", "-1", "1",
    "999999999", "10000000000000000000000", "1e308", "0.5", "-0.0", "3x224x224",
    "conv", "maxpool", "avgpool", "global", "same", "linear", "flatten", "batchnorm",
    "relu", "dropout", "lrn", "identity", "k=", "s=", "p=", "groups=", "bias=false",
    "ceil_mode=true", "stride", "c", "classes", "max(", "min(", "floor(", "ceil(",
    "round(", "make_divisible(", "true", "false", "none", "not", "and", "or", "//",
    "/", "%", "+", "-", "==", '"', '"blocks/resnet.cnn"', '"nowhere.cnn"', "\t", "\r",
    "\\\n", "{i}", "é", "\x00", "\f",
]
NUMBERS = ["0", "-1", "1", "2", "3", "7", "64", "999999999", "1000000000000000000",
           "1e308", "0.5", "1.5", "(1/0)", "(0-5)", "(in.c*0)"]

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\s+|.", re.S)
_NUMBER = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")


def _mutate_chars(draw, text: str) -> str:
    if not text:
        return draw(st.sampled_from(VOCABULARY))
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "insert"]))
    i = draw(st.integers(0, len(text) - 1))
    if kind == "delete":
        width = draw(st.integers(1, 8))
        return text[:i] + text[i + width:]
    if kind == "duplicate":
        width = draw(st.integers(1, 40))
        return text[:i] + text[i:i + width] + text[i:]
    if kind == "swap":
        j = draw(st.integers(0, len(text) - 1))
        chars = list(text)
        chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)
    return text[:i] + draw(st.sampled_from(VOCABULARY)) + text[i:]


def _mutate_tokens(draw, text: str) -> str:
    tokens = _TOKEN.findall(text)
    if not tokens:
        return draw(st.sampled_from(VOCABULARY))
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "replace"]))
    i = draw(st.integers(0, len(tokens) - 1))
    if kind == "delete":
        del tokens[i]
    elif kind == "duplicate":
        tokens.insert(i, tokens[i])
    elif kind == "swap":
        j = draw(st.integers(0, len(tokens) - 1))
        tokens[i], tokens[j] = tokens[j], tokens[i]
    elif kind == "insert":
        tokens.insert(i, " " + draw(st.sampled_from(VOCABULARY)) + " ")
    else:
        tokens[i] = draw(st.sampled_from(VOCABULARY))
    return "".join(tokens)


def _mutate_lines(draw, text: str) -> str:
    lines = text.split("\n")
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "move"]))
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "swap":
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        line = lines.pop(i)
        lines.insert(draw(st.integers(0, len(lines))), line)
    return "\n".join(lines)


def _mutate_numbers(draw, text: str) -> str:
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return text
    match = matches[draw(st.integers(0, len(matches) - 1))]
    return text[:match.start()] + draw(st.sampled_from(NUMBERS)) + text[match.end():]


_MUTATORS = [_mutate_chars, _mutate_tokens, _mutate_lines, _mutate_numbers]


@st.composite
def mutated_specs(draw):
    text = SPEC_TEXTS[draw(st.sampled_from(sorted(SPEC_TEXTS)))]
    for _ in range(draw(st.integers(1, 4))):
        text = draw(st.sampled_from(_MUTATORS))(draw, text)
    return text


@pytest.mark.parametrize("name", sorted(SPEC_TEXTS))
def test_unmutated_specs_load(name):
    """The baseline: every shipped spec, imports inlined, loads as text."""
    result = check_contract(SPEC_TEXTS[name])
    assert not isinstance(result, SpecError), str(result)


@FUZZ
@given(mutated_specs())
def test_mutated_specs_fail_cleanly(text):
    check_contract(text)


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(SPEC_TEXTS)), st.data())
def test_number_replacement_everywhere(name, data):
    """Every number in a spec, replaced by a hostile value, one or several at once."""
    text = SPEC_TEXTS[name]
    for _ in range(data.draw(st.integers(1, 6))):
        text = _mutate_numbers(data.draw, text)
    check_contract(text)


# ------------------------------------------------------------------ generated specs

VALUES = ["0", "1", "2", "3", "4", "7", "16", "64", "-1", "(0-3)", "999999999",
          "1000000000000000000000", "0.5", "2.5", "1e308", "1e308 * 1e308", "in.c",
          "in.c // 2", "in.c * 2", "in.h", "in.w + 1", "(1/0)", "(5 % 0)", "c", "c * 4",
          "max(c, 1)", "min(c, 0)", "floor(c / 3)", "ceil(c / 3)", "round(2.5)",
          "make_divisible(c * 1.5, 8)", "(c if c > 2 else 0)", "true", "none", "same",
          '"text"', "(1, 2)", "nope"]
SMALL = ["0", "1", "2", "3", "-1", "5", "999999999", "0.5", "same", "(1, 3)", "c"]
PROBABILITIES = ["0", "0.2", "0.5", "1", "1.5", "-0.1", "c"]


@st.composite
def _value(draw, pool=VALUES):
    return draw(st.sampled_from(pool))


@st.composite
def _layer(draw, depth: int):
    """One layer statement's unit, possibly structural (nested to `depth`)."""
    kinds = ["conv", "conv", "dwconv", "maxpool", "avgpool", "global", "adaptive",
             "linear", "flatten", "batchnorm", "relu", "tanh", "dropout", "lrn",
             "identity", "leaky_relu", "softmax", "drop_path", "call", "unknown"]
    if depth > 0:
        kinds += ["concat", "concat", "residual", "residual_sc", "dense", "gate",
                  "repeat", "group", "mean", "add", "aux", "if"]
    kind = draw(st.sampled_from(kinds))
    v = lambda pool=VALUES: draw(_value(pool))  # noqa: E731

    def body():
        return "{ " + "; ".join(draw(st.lists(_layer(depth - 1), min_size=0,
                                              max_size=3))) + " }"

    if kind == "conv":
        extra = draw(st.lists(st.sampled_from([
            f"k={v(SMALL)}", f"s={v(SMALL)}", f"p={v(SMALL)}", f"groups={v(SMALL)}",
            f"d={v(SMALL)}", "bias=false", f"bias={v()}", "k=0", "padding=same",
            f"{v(SMALL)}"]), max_size=4))
        return " ".join(["conv", v()] + extra)
    if kind == "dwconv":
        return f"dwconv k={v(SMALL)} s={v(SMALL)}"
    if kind in ("maxpool", "avgpool"):
        extra = draw(st.lists(st.sampled_from([f"s={v(SMALL)}", f"p={v(SMALL)}",
                                               "ceil_mode=true"]), max_size=2))
        return " ".join([kind, v(SMALL)] + extra)
    if kind == "global":
        return draw(st.sampled_from(["avgpool global", "maxpool global",
                                     "avgpool global k=3"]))
    if kind == "adaptive":
        return f"adaptive_avgpool {v(SMALL)}"
    if kind == "linear":
        return f"linear {v()}" + draw(st.sampled_from(["", " bias=false"]))
    if kind == "dropout":
        return f"dropout {v(PROBABILITIES)}"
    if kind == "drop_path":
        return f"drop_path {v(PROBABILITIES)}"
    if kind == "lrn":
        return f"lrn {v(SMALL)} alpha={v()} beta=0.75 k={v(SMALL)}"
    if kind == "leaky_relu":
        return f"leaky_relu {v()}"
    if kind == "call":
        return draw(st.sampled_from(["b(c=2)", "b(3)", "b()", "b(0)", "b(-1)",
                                     "b(999999999)", "b(1, 2, 3)", "b(q=1)", "b"]))
    if kind == "unknown":
        return draw(st.sampled_from(["frobnicate 3", "conv2d 3", "Relu", "b2(1)"]))
    if kind in ("concat", "mean", "add"):
        # Branches whose shapes may or may not agree.
        branches = draw(st.lists(_layer(depth - 1), min_size=0, max_size=4))
        return f"{kind} {{ " + "; ".join(branches) + " }"
    if kind == "residual":
        return "residual " + body()
    if kind == "residual_sc":
        auto = draw(st.sampled_from(["", "auto ", "down: auto ", "down: "]))
        return "residual " + body() + f" shortcut {auto}" + body()
    if kind == "dense":
        return "dense " + body()
    if kind == "gate":
        return "gate " + body()
    if kind == "aux":
        return f"aux weight={v(PROBABILITIES)} " + body()
    if kind == "repeat":
        count = draw(st.sampled_from(["0", "1", "2", "3", "-1", "0.5", "c", "in.c",
                                      "1000000000"]))
        named = draw(st.sampled_from(["", " as i"]))
        return f"repeat {count}{named} " + body()
    if kind == "if":
        return f"if {draw(st.sampled_from(['true', 'false', 'c > 2', 'in.c == 3', '1']))} " \
            + body() + draw(st.sampled_from(["", " else " + body()]))
    if kind == "group":
        return body()
    return kind


@st.composite
def _statement(draw, depth: int):
    unit = draw(_layer(depth))
    if unit.startswith("if "):
        return unit  # a statement of its own: no label, chain, count or shape
    label = draw(st.sampled_from(["", "", "", "l1: ", "l1: ", "conv1: ", "x{i}: ",
                                  "b{c + 1}: ", "_: "]))
    chain = draw(st.sampled_from(["", "", ", relu", ", " + draw(_layer(0))]))
    times = draw(st.sampled_from(["", "", " * 2", " * 0", " * (0-1)", " * 1000000000",
                                  " * c", " * 0.5"]))
    shape = draw(st.sampled_from(["", "", " -> 3x8x8", " -> 16x4x4", " -> 10",
                                  " -> 0x1x1", " -> c", " -> (in.c)", " -> 3x8x8x8"]))
    return label + unit + chain + times + shape


@st.composite
def generated_specs(draw):
    dims = draw(st.sampled_from([
        "x".join(draw(st.lists(st.sampled_from(["3", "8", "8", "32", "1", "0", "224",
                                                "999999999"]), min_size=1, max_size=4))),
        "3x8x8", "3x8x8", "16x32x32", "(0-2)", "c", "(c * 8)"]))
    c_default = draw(st.sampled_from(["4", "4", "4", "0", "-2", "1000000000", "0.5",
                                      "none"]))
    block_body = "; ".join(draw(st.lists(_statement(1), max_size=3)))
    statements = draw(st.lists(_statement(2), min_size=0, max_size=8))
    lets = draw(st.sampled_from(["", "let w = c * 2\n", "let w = 1 / 0\n",
                                 "let c = 3\n"]))
    option = draw(st.sampled_from(["", "", "", "", "", "option sizes = \"floor\"\n",
                                   "option sizes = \"exact\"\n",
                                   "option bytes_per_element = 2\n",
                                   "option bytes_per_element = 0\n", "option nope = 1\n"]))
    parts = [f"block b(c = 2) {{ {block_body} }}",
             f"network n(c = {c_default}) {{",
             "input " + dims,
             lets + option + "\n".join(statements),
             "}"]
    return "\n".join(parts) + "\n"


@FUZZ
@given(generated_specs())
def test_generated_specs_fail_cleanly(text):
    check_contract(text)


# ------------------------------------------------------------------ hostile inputs

_CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {root!r})
    import cnnspec
    from cnnspec import SpecError
    text = {build}
    report = {{"lines": text.count("\\n") + 1}}
    try:
        spec = cnnspec.load(text)
        report.update(ok=True, params=spec.params, nodes=len(spec.graph.nodes),
                      output=list(spec.output_shape))
    except SpecError as err:
        report.update(ok=False, message=str(err), diagnostics=[
            dict(code=d.code, line=d.span.line if d.span else None,
                 column=d.span.column if d.span else None,
                 file=d.span.source.name if d.span else None)
            for d in err.diagnostics])
    # VmHWM is this process's own peak; ru_maxrss would include the parent's (fork).
    with open("/proc/self/status") as status:
        report["maxrss_kb"] = next(int(line.split()[1]) for line in status
                                   if line.startswith("VmHWM:"))
    print(json.dumps(report))
""")


def run_hostile(build: str, cwd: Path | None = None) -> dict:
    """Run `cnnspec.load(<build>)` in a fresh interpreter; a hang or crash fails."""
    code = _CHILD.format(root=str(ROOT), build=build)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                              text=True, timeout=HOSTILE_TIMEOUT_S, cwd=cwd or ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cnnspec.load hung (> {HOSTILE_TIMEOUT_S} s) on: {build[:300]}")
    assert done.returncode == 0, (
        f"the child crashed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["maxrss_kb"] * 1024 < MAX_RSS_BYTES, (
        f"peak memory {report['maxrss_kb'] / 1024:.0f} MiB")
    return report


def assert_clean_error(report: dict, *codes: str, located: bool = True) -> dict:
    assert report["ok"] is False, f"expected a SpecError, got {str(report)[:2000]}"
    assert report["message"].strip()
    first = report["diagnostics"][0]
    if codes:
        assert first["code"] in codes, report["message"][:2000]
    for d in report["diagnostics"]:
        if located or d["line"] is not None:
            assert d["line"] is not None, report["message"][:2000]
            if d["file"] == "<string>":
                assert 1 <= d["line"] <= report["lines"] + 1, report["message"][:2000]
            assert d["column"] >= 1, report["message"][:2000]
    return first


def _net(body: str) -> str:
    """A Python expression building a one-network spec around `body` (an expression)."""
    return f'"network n {{\\n    input 3x8x8\\n" + {body} + "\\n}}\\n"'


def test_huge_channel_count_is_an_exact_answer():
    report = run_hostile(_net('"    conv 1000000000 k=1"'))
    assert report["ok"], report
    # 3 * 10**9 weights + 10**9 biases, exactly.
    assert report["params"] == 4_000_000_000
    assert report["output"] == [1_000_000_000, 8, 8]


def test_huge_conv_params_beyond_64_bits_are_exact():
    report = run_hostile(_net(repr("    conv 1" + "0" * 30 + " k=1")))
    assert report["ok"], report
    assert report["params"] == 4 * 10**30


def test_repeat_a_billion_times():
    assert_clean_error(run_hostile(_net('"    repeat 1000000000 { relu }"')), "E0209")


def test_star_a_billion_times():
    assert_clean_error(run_hostile(_net('"    relu * 1000000000"')), "E0209")


def test_block_calling_itself():
    build = '"block b { relu; b }\\nnetwork n {\\n    input 3x8x8\\n    b\\n}\\n"'
    assert_clean_error(run_hostile(build), "E0208")


def test_mutually_recursive_blocks():
    build = ('"block a { relu; b }\\nblock b { relu; a }\\n'
             'network n {\\n    input 3x8x8\\n    a\\n}\\n"')
    assert_clean_error(run_hostile(build), "E0208")


def test_recursive_block_without_layers():
    build = '"block b { b }\\nnetwork n {\\n    input 3x8x8\\n    b\\n}\\n"'
    assert_clean_error(run_hostile(build), "E0208")


def test_ten_megabytes_of_relu_lines():
    report = run_hostile(_net('"    relu\\n" * 2_000_000'))
    assert_clean_error(report, "E0001", located=False)


def test_ten_megabytes_of_garbage():
    build = ('(lambda r: "".join(chr(r.randrange(1, 0x3000)) for _ in range(10_000_000)))'
             '(__import__("random").Random(7))')
    assert_clean_error(run_hostile(build), "E0001", located=False)


def test_ten_megabytes_of_binary_noise_in_a_file(tmp_path):
    path = tmp_path / "noise.cnn"
    path.write_bytes(bytes(range(256)) * 40_000)
    report = run_hostile(repr(str(path)))
    assert_clean_error(report, "E0001", "E0003", located=False)


def test_just_under_the_size_limit_of_garbage():
    build = ('(lambda r: "".join(r.choice("{}()->x*,:=;\\n relu0") '
             'for _ in range(199_000)))(__import__("random").Random(3))')
    assert_clean_error(run_hostile(build))


@pytest.mark.parametrize("body", [
    '"    " + "{ " * 10_000 + "relu" + " }" * 10_000',
    '"    conv " + "(" * 10_000 + "1" + ")" * 10_000',
    '"    conv " + "max(" * 10_000 + "1" + ", 1)" * 10_000',
    '"    x{" + "(" * 10_000 + "1" + ")" * 10_000 + "}: relu"',
])
def test_brackets_nested_ten_thousand_deep(body):
    first = assert_clean_error(run_hostile(_net(body)), "E0002")
    assert first["line"] == 3


def test_ten_thousand_nested_residuals():
    body = '"    " + "residual { " * 10_000 + "relu" + " }" * 10_000'
    assert_clean_error(run_hostile(_net(body)), "E0002")


def test_ninety_thousand_unary_minuses():
    report = run_hostile(_net('"    conv " + "- " * 90_000 + "1"'))
    assert_clean_error(report)


def test_ninety_thousand_unary_minuses_points_at_the_expression():
    """The diagnostic should quote the culprit line (3), not the file's first line."""
    report = run_hostile(_net('"    conv " + "- " * 90_000 + "1"'))
    first = assert_clean_error(report)
    assert first["line"] == 3, report["message"][:500]


def test_long_flat_sum_is_not_nesting():
    """`1 + 1 + ... + 1` is a flat chain: it must not blow the stack or take long."""
    report = run_hostile(_net('"    let a = " + "1 + " * 40_000 + "1\\n    relu"'))
    if not report["ok"]:
        first = assert_clean_error(report)
        assert first["line"] == 3, report["message"][:500]


def test_ten_thousand_digit_integer():
    report = run_hostile(_net('"    conv " + "9" * 10_000 + " k=1"'))
    first = assert_clean_error(report, "E0104")
    assert first["line"] == 3


def test_ten_thousand_digit_float():
    report = run_hostile(_net('"    dropout 0." + "9" * 10_000'))
    if not report["ok"]:
        assert_clean_error(report)


def test_four_thousand_digit_integer_is_exact():
    """Under Python's int() digit limit, a long integer is a number like any other."""
    report = run_hostile(_net('"    conv " + "1" + "0" * 4000 + " k=1"'))
    assert report["ok"], report
    assert report["params"] == 4 * 10**4000


def test_150_thousand_relu_layers_via_repeat():
    report = run_hostile(_net('"    repeat 1000 { repeat 150 { relu } }"'))
    if report["ok"]:
        assert report["nodes"] == 150_001
    else:
        assert_clean_error(report, "E0209")


def test_150_thousand_in_one_repeat():
    report = run_hostile(_net('"    repeat 150000 { relu }"'))
    if report["ok"]:
        assert report["nodes"] == 150_001
    else:
        assert_clean_error(report, "E0209")


def test_node_limit_stops_runaway_growth():
    report = run_hostile(_net('"    repeat 100000 { repeat 100000 { relu } }"'))
    assert_clean_error(report, "E0209")


@pytest.mark.parametrize("body", [
    "repeat 100000 { repeat 100000 { } }",
    "repeat 100000 { repeat 100000 { let x = 1 } }",
    "repeat 100000 { repeat 100000 { if false { relu } } }",
    "repeat 100000 { repeat 100000 { repeat 0 { relu } } }",
])
def test_nested_repeats_of_nothing_do_not_hang(body):
    """Repeats that add no layer must still be bounded (total work, not only nodes)."""
    report = run_hostile(_net(repr("    " + body)))
    if not report["ok"]:
        assert_clean_error(report, "E0209")


def test_empty_block_called_ten_billion_times():
    build = ('"block e { }\\nnetwork n {\\n    input 3x8x8\\n'
             '    repeat 100000 { e * 100000 }\\n}\\n"')
    report = run_hostile(build)
    if not report["ok"]:
        assert_clean_error(report, "E0209", "E0217")


@pytest.mark.parametrize("expression", ["4 / 0", "4 // 0", "4 % 0", "4 / (2 - 2)",
                                        "in.c // (in.c - 3)", "4 / 0.0"])
def test_division_by_zero(expression):
    report = run_hostile(_net(repr(f"    conv {expression} k=1")))
    first = assert_clean_error(report, "E0211")
    assert first["line"] == 3


@pytest.mark.parametrize("expression", ["1e308 * 1e308", "1e308 + 1e308",
                                        "-1e308 * 1e308", "1e308 * 1e308 - 1e308 * 1e308",
                                        "1e999"])
def test_overflowing_float_channel_count(expression):
    report = run_hostile(_net(repr(f"    conv {expression} k=1")))
    first = assert_clean_error(report)
    assert first["line"] == 3


def test_huge_int_times_float_overflow():
    report = run_hostile(_net(repr("    conv " + "9" * 400 + " * 1.5 k=1")))
    assert_clean_error(report)


def test_import_cycle_between_two_files(tmp_path):
    (tmp_path / "a.cnn").write_text(
        'import "b.cnn"\nblock x { relu }\nnetwork n {\n    input 3x8x8\n    x\n}\n')
    (tmp_path / "b.cnn").write_text('import "a.cnn"\nblock y { relu }\n')
    report = run_hostile(repr(str(tmp_path / "a.cnn")))
    first = assert_clean_error(report, "E0210")
    assert Path(first["file"]).name in ("a.cnn", "b.cnn")
    assert first["line"] == 1


def test_file_importing_itself(tmp_path):
    (tmp_path / "c.cnn").write_text(
        'import "c.cnn"\nnetwork n {\n    input 3x8x8\n    relu\n}\n')
    first = assert_clean_error(run_hostile(repr(str(tmp_path / "c.cnn"))), "E0210")
    assert first["line"] == 1


def test_import_of_a_directory_and_of_a_missing_file(tmp_path):
    (tmp_path / "dir.cnn").mkdir()
    (tmp_path / "d.cnn").write_text(
        'import "dir.cnn"\nnetwork n {\n    input 3x8x8\n    relu\n}\n')
    (tmp_path / "e.cnn").write_text(
        'import "missing.cnn"\nnetwork n {\n    input 3x8x8\n    relu\n}\n')
    assert_clean_error(run_hostile(repr(str(tmp_path / "d.cnn"))), "E0210")
    assert_clean_error(run_hostile(repr(str(tmp_path / "e.cnn"))), "E0210")


def test_import_of_a_huge_file(tmp_path):
    (tmp_path / "big.cnn").write_text("block b { relu }\n" + "# pad\n" * 2_000_000)
    (tmp_path / "f.cnn").write_text(
        'import "big.cnn"\nnetwork n {\n    input 3x8x8\n    b\n}\n')
    report = run_hostile(repr(str(tmp_path / "f.cnn")))
    assert_clean_error(report, "E0001", located=False)


def test_huge_input_shape_is_exact():
    report = run_hostile('"network n {\\n    input 3x1000000000x1000000000\\n'
                         '    conv 64 k=3 p=1\\n    flatten\\n    linear 10\\n}\\n"')
    assert report["ok"], report
    assert report["params"] == 64 * 27 + 64 + (64 * 10**18 * 10 + 10)


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\u2028", "\x85", "\r", ""])
def test_odd_line_breaks_quote_the_right_line(char):
    """A diagnostic must quote the line it names, whatever other breaks the text has."""
    text = f"network n {{{char}\n    input 3x8x8\n    relu{char}\n    conv 0\n}}\n"
    check_contract(text)


@pytest.mark.parametrize("dims", ["3 x (8) x 8", "(3) x 8 x 8", "3 x 8 x (4 + 4)",
                                  "c x 8 x 8", "3 x 8 x (c + 5)", "3x8x8"])
def test_shape_dims_with_names_and_parentheses(dims):
    """Names and `(expr)` in a shape, spaced out as the language asks."""
    spec = cnnspec.load(f"network n(c = 3) {{\n    input 3x8x8\n    relu -> {dims}\n}}\n")
    assert spec.output_shape == (3, 8, 8)


@pytest.mark.parametrize("dims", ["3x(8)x8", "(3)x8x8", "3x8x(4 + 4)", "cx8x8", "3x8xc"])
def test_unspaced_shape_dims_fail_cleanly(dims):
    """Unspaced, `x8x8` reads as a name: that must be a located diagnostic, not a crash."""
    text = f"network n(c = 3) {{\n    input 3x8x8\n    relu -> {dims}\n}}\n"
    result = check_contract(text)
    if isinstance(result, SpecError):
        assert result.diagnostics[0].span.line == 3
