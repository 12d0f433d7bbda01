"""Every diagnostic cnnspec can raise: code, location, message, label and help.

Each test feeds a minimal bad spec to `cnnspec.load` and checks the first diagnostic
of the `SpecError`. Expected arithmetic is worked out by hand in the comments, not
copied from cnnspec's output. Line and column are 1-based; specs are written so
that `network` is on line 1.

Some tests state the behaviour a diagnostic *should* have where cnnspec does not
(yet) behave that way; their docstrings say so.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cnnspec
from cnnspec import Diagnostic, SpecError
from cnnspec.frontend.parse import MAX_SOURCE_BYTES

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers


def spec(text: str) -> str:
    """Dedent a spec written as an indented triple-quoted string."""
    return textwrap.dedent(text).lstrip("\n")


def diagnose(source, **kwargs) -> Diagnostic:
    """Load a bad spec (text or path) and return its first diagnostic."""
    with pytest.raises(SpecError) as info:
        cnnspec.load(source, **kwargs)
    assert info.value.diagnostics, "a SpecError must carry at least one diagnostic"
    return info.value.diagnostics[0]


def expect(d: Diagnostic, code: str, line: int | None, column: int | None,
           message: str, label: str | None = None, help: str | None = None) -> None:
    """Assert a diagnostic's code, position, and distinctive text."""
    assert d.code == code, d
    if line is None:
        assert d.span is None, d
    else:
        assert d.span is not None, d
        assert (d.span.line, d.span.column) == (line, column), d
    assert message in d.message, d
    if label is not None:
        assert label in d.label, d
    if help is not None:
        assert help in d.help, d


def on_net(body: str, input: str = "3x32x32", header: str = "network n {") -> str:
    """A network with `input` on line 2 and `body` (one statement a line) from line 3."""
    lines = [header, f"    input {input}"]
    lines += ["    " + line if line else "" for line in textwrap.dedent(body).strip("\n")
              .splitlines()]
    return "\n".join(lines + ["}", ""])


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(spec(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the headline case


ALEXNET_224 = spec("""
    network alexnet {
        input 3x224x224
        conv1: conv 96 k=11 s=4
        relu1: relu
    }
""")


def test_alexnet_224_conv1_fails_at_conv1_with_the_arithmetic():
    # (224 - 11 + 0) / 4 + 1 = 213 / 4 + 1 = 53.25 + 1 = 54.25: not whole.
    # 227 fits: (227 - 11) / 4 + 1 = 216 / 4 + 1 = 55.
    d = diagnose(ALEXNET_224)
    expect(d, "E0301", 3, 5, "`conv1` output width is not a whole number",
           label="(224 - 11 + 2*0) / 4 + 1 = 54.25", help="227")
    # The caret covers `conv1: conv 96 k=11 s=4` (23 characters), all on line 3.
    assert (d.span.end_line, d.span.end_column) == (3, 28)


def test_alexnet_at_227_is_fine():
    spec_ = cnnspec.load(ALEXNET_224.replace("224x224", "227x227"))
    assert spec_.facts("conv1").shape == (96, 55, 55)


def test_rendered_diagnostic_line_by_line():
    with pytest.raises(SpecError) as info:
        cnnspec.load(ALEXNET_224)
    lines = str(info.value).splitlines()
    assert lines[0] == "error[E0301]: `conv1` output width is not a whole number"
    assert lines[1] == " --> <string>:3:5"
    assert lines[2] == "  |"
    assert lines[3] == "3 |     conv1: conv 96 k=11 s=4"
    assert lines[4] == "  |     " + "^" * 23 + " (224 - 11 + 2*0) / 4 + 1 = 54.25"
    # The carets sit exactly under the statement in the quoted line.
    assert lines[4].index("^") == lines[3].index("conv1")
    assert lines[5].lstrip().startswith("= help: ")
    assert "227" in lines[5]
    assert len(lines) == 6


def test_help_line_lines_up_with_the_gutter():
    """`= help` sits under the `|` of the gutter, as in rustc and DESIGN.md.

    cnnspec indents notes and help by a fixed three spaces, so for a one-digit
    line number `=` is one column right of `|`."""
    with pytest.raises(SpecError) as info:
        cnnspec.load(ALEXNET_224)
    lines = str(info.value).splitlines()
    assert lines[5].index("=") == lines[2].index("|")


def test_caret_lines_up_under_a_tab_indented_line():
    """Tabs are expanded in the quoted line, so the carets must move with them."""
    text = "network n {\n\tinput 3x224x224\n\tconv1: conv 96 k=11 s=4\n}\n"
    with pytest.raises(SpecError) as info:
        cnnspec.load(text)
    lines = str(info.value).splitlines()
    quoted, carets = lines[3], lines[4]
    assert carets.index("^") == quoted.index("conv1")


# ---------------------------------------------------------------- E00xx: reading


def test_E0001_spec_too_long():
    # 3 short lines plus a comment as long as the limit.
    text = on_net("relu") + "#" * MAX_SOURCE_BYTES + "\n"
    d = diagnose(text)
    expect(d, "E0001", None, None, f"the spec is {len(text):,} characters long",
           label=f"at most {MAX_SOURCE_BYTES:,} characters", help="import")


def test_E0001_names_the_file_that_is_too_long(tmp_path):
    """Without a span, the diagnostic must still say which file is too long (the
    culprit may be an imported file)."""
    write(tmp_path, "huge.cnn", "block b() {\n    relu\n}\n" + "#" * (MAX_SOURCE_BYTES + 1) + "\n")
    main = write(tmp_path, "main.cnn", """
        import "huge.cnn"
        network n {
            input 3x8x8
            b()
        }
    """)
    with pytest.raises(SpecError) as info:
        cnnspec.load(main)
    assert info.value.code == "E0001"
    assert "huge.cnn" in str(info.value)


def test_E0002_brackets_nest_too_deeply():
    # The network's `{` is level 1, so the 32nd `(` is level 33: column 13 + 31 = 44.
    d = diagnose(on_net("let a = " + "(" * 40 + "1" + ")" * 40))
    expect(d, "E0002", 3, 44, "brackets nest deeper than 32 levels",
           label="one too deep", help="block or a `let`")


def test_E0002_deep_expression_points_at_the_expression():
    """A recursion limit hit while reading an expression must point at that
    expression (line 3), not at line 1 column 1."""
    d = diagnose(on_net("let a = " + "-" * 5000 + "1\nrelu"))
    assert d.code == "E0002", d
    assert d.span is not None and d.span.line == 3, d
    assert d.span.column in (5, 13), d  # the `let` statement or its expression


def test_E0003_no_such_file(tmp_path):
    path = tmp_path / "nope.cnn"
    d = diagnose(path)
    expect(d, "E0003", None, None, f"no such spec file: {path}")


def test_E0003_file_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.cnn"
    path.write_bytes("network n {\n    input 3x8x8 # caf\xe9\n}\n".encode("latin-1"))
    d = diagnose(path)
    expect(d, "E0003", None, None, f"cannot read {path}")


# ---------------------------------------------------------------- E01xx: syntax


def test_E0101_equals_instead_of_colon():
    d = diagnose(on_net("conv1 = conv 8 k=3"))
    expect(d, "E0101", 3, 11, "unexpected `=`", label="expected",
           help="a layer is named with a colon")
    assert "`:`" in d.label


def test_E0101_shape_written_with_star():
    d = diagnose(on_net("conv 8 k=3 -> 8*30*30"))
    expect(d, "E0101", 3, 20, "unexpected `*`", label="expected",
           help="shapes are written with `x`")


def test_E0101_two_labels_on_one_line():
    d = diagnose(on_net("relu: relu: relu"))
    expect(d, "E0101", 3, 15, "unexpected `:`", help="is a newline missing")


def test_E0101_power_operator_gets_no_shape_help():
    """`2 ** 3` is not about shapes: the help must not talk about `x` shapes."""
    d = diagnose(on_net("let y = 2 ** 3"))
    expect(d, "E0101", 3, 16, "unexpected `*`")
    assert "shape" not in d.help, d


@pytest.mark.parametrize("shape", ["(in.c)x32x32", "3x(c*2)x32"])
def test_E0101_glued_x_after_an_expression_dimension_explains_spacing(shape):
    """With an expression dimension, shapes need spaced `x` (`(c*2) x 32`). The
    diagnostic must say so, and must not report "unexpected `x`, expected `x`"."""
    d = diagnose(on_net(f"relu -> {shape}", header="network n(c = 3) {"))
    assert d.code == "E0101", d
    assert d.span.line == 3, d
    assert not ("`x`" in d.message and "`x`" in d.label), d
    assert " x " in d.help, d


def test_E0102_unexpected_character():
    d = diagnose(on_net("conv 8 k=3 $"))
    expect(d, "E0102", 3, 16, "unexpected character `$`")
    assert d.label, d


def test_E0103_file_ends_mid_statement():
    d = diagnose("network n {\n    input 3x32x32\n    conv 8 k=3")
    # Right after `conv 8 k=3` (10 characters after 4 spaces): column 15.
    expect(d, "E0103", 3, 15, "the file ends in the middle of a statement",
           label="expected", help="unclosed `{`")


def test_E0103_points_at_text_not_past_the_last_newline():
    """With the usual trailing newline the caret must still point at something the
    user wrote: the end of the last line, or the unclosed `{`; not an empty line 4."""
    d = diagnose("network n {\n    input 3x32x32\n    conv 8 k=3\n")
    assert d.code == "E0103", d
    assert (d.span.line, d.span.column) in ((3, 15), (1, 11)), d


def test_E0104_integer_with_too_many_digits():
    d = diagnose(on_net("conv " + "9" * 5000 + " k=3"))
    expect(d, "E0104", 3, 10, "too many digits", label="5,000 digits")


def test_E0104_float_too_large():
    d = diagnose(on_net("dropout 1e999"))
    expect(d, "E0104", 3, 13, "this number is too large", label="64-bit float")


# ---------------------------------------------------------------- E02xx: meaning


def test_E0201_unknown_name_suggests_a_parameter():
    d = diagnose(on_net("conv widht k=3", header="network n(width = 8) {"))
    expect(d, "E0201", 3, 10, "unknown name `widht`", label="not a parameter",
           help="did you mean `width`?")


def test_E0201_unknown_function():
    d = diagnose(on_net("conv sqr(4) k=3"))
    expect(d, "E0201", 3, 10, "unknown function `sqr`", label="sqrt",
           help="did you mean `sqrt`?")


def test_E0201_unknown_input_attribute():
    d = diagnose(on_net("conv in.chanels k=3"))
    expect(d, "E0201", 3, 10, "`in` has no attribute `chanels`", label="in.c",
           help="did you mean `channels`?")


def test_E0202_unknown_layer_suggests_batchnorm():
    d = diagnose(on_net("conv 8 k=3\nbatchnrom"))
    expect(d, "E0202", 4, 5, "unknown layer or block `batchnrom`",
           label="not a layer kind", help="did you mean `batchnorm`?")


def test_E0203_unknown_argument_suggests_stride():
    d = diagnose(on_net("conv 8 k=3 strid=2"))
    expect(d, "E0203", 3, 16, "`conv` has no argument `strid`", label="stride",
           help="did you mean `stride`?")


def test_E0203_argument_given_twice():
    d = diagnose(on_net("conv 8 k=3 k=5"))
    expect(d, "E0203", 3, 16, "`kernel_size` is given twice")


def test_E0203_block_has_no_such_parameter():
    d = diagnose(spec("""
        block b(c) {
            conv c k=3
        }
        network n {
            input 3x32x32
            b(8, d=2)
        }
    """))
    expect(d, "E0203", 6, 10, "block `b` has no parameter `d`",
           label="its parameters are c")


def test_E0203_unknown_network_parameter_from_the_caller():
    d = diagnose("network n(classes = 10) {\n    input 3x32x32\n}\n", classs=10)
    expect(d, "E0203", 1, 9, "network `n` has no parameter `classs`",
           label="classes", help="did you mean `classes`?")


def test_E0203_aux_takes_only_weight():
    d = diagnose(on_net("aux w=1 { relu }"))
    expect(d, "E0203", 3, 9, "`aux` takes only `weight=`", help="aux weight=0.3")


def test_E0204_layer_missing_a_required_argument():
    d = diagnose(on_net("conv k=3"))
    expect(d, "E0204", 3, 5, "`conv` needs `out_channels`", label="no default")


def test_E0204_block_missing_an_argument():
    d = diagnose(spec("""
        block b(c) {
            conv c k=3
        }
        network n {
            input 3x32x32
            b()
        }
    """))
    expect(d, "E0204", 6, 5, "block `b` needs `c`")
    assert any("<string>:1:1" in note for note in d.notes), d


def test_E0204_network_parameter_without_value():
    d = diagnose("network n(c) {\n    input 3x32x32\n    conv c k=3\n}\n")
    expect(d, "E0204", 1, 11, "network parameter `c` has no value",
           help="give it a default")


def test_E0205_too_many_positional_arguments():
    # conv takes out_channels and kernel_size by position; `1` is the third.
    d = diagnose(on_net("conv 8 3 1"))
    expect(d, "E0205", 3, 14, "too many positional arguments for `conv`",
           label="out_channels, kernel_size", help="stride=")


def test_E0205_block_given_too_many_arguments():
    d = diagnose(spec("""
        block b(c) {
            conv c k=3
        }
        network n {
            input 3x32x32
            b(8, 2)
        }
    """))
    expect(d, "E0205", 6, 10, "block `b` takes 1 argument", label="2 given")


def test_E0205_help_is_not_left_dangling():
    """`softmax` takes no arguments at all: the help must not read
    "name the others: " with nothing after it."""
    d = diagnose(on_net("softmax 2"))
    expect(d, "E0205", 3, 13, "too many positional arguments for `softmax`")
    assert not d.help.rstrip().endswith(":"), d


def test_E0206_probability_out_of_range():
    d = diagnose(on_net("dropout 1.5"))
    expect(d, "E0206", 3, 13, "`p` of `dropout`", label="1.5")


def test_E0206_condition_is_not_a_boolean():
    d = diagnose(on_net("if 1 {\n    relu\n}"))
    expect(d, "E0206", 3, 8, "a condition must be true or false", label="found 1",
           help="compare it")


def test_E0206_negative_repeat_count():
    d = diagnose(on_net("repeat -1 {\n    relu\n}"))
    expect(d, "E0206", 3, 12, "a repeat count must be a whole number >= 0",
           label="found -1")


def test_E0206_zero_shape_dimension():
    d = diagnose(on_net("relu -> 3x0x32"))
    assert d.code == "E0206", d
    assert d.span.line == 3 and "a shape dimension must be a whole number >= 1" \
        in d.message, d


def test_E0206_input_with_two_dimensions():
    d = diagnose("network n {\n    input 32x32\n}\n")
    expect(d, "E0206", 2, 5, "the input is C x H x W", label="found 2 dimensions")


def test_E0206_invalid_layer_name_from_a_template():
    d = diagnose(on_net("layer{0 - 1}: relu"))
    expect(d, "E0206", 3, 5, "`layer-1` is not a valid layer name",
           label="letters, digits and `_`")


def test_E0206_negative_aux_weight():
    d = diagnose(on_net("aux weight=-1 { relu }"))
    expect(d, "E0206", 3, 9, "`weight` must be a number >= 0")


def test_E0206_train_entry_without_a_kind():
    d = diagnose(on_net("train {\n    optimizer: lr=0.1\n}"))
    expect(d, "E0206", 4, 20, "`optimizer` starts with a kind")


def test_E0206_scalar_train_entry_given_two_values():
    """`epochs: 10, 20` must be refused, not silently read as 10."""
    d = diagnose(on_net("train {\n    epochs: 10, 20\n}"))
    expect(d, "E0206", 4, 9, "`epochs` takes one value", label="2 values given")


def test_E0206_misspelt_train_entry_suggests_the_right_one():
    """A typo in a recipe key deserves a did-you-mean, not Pydantic's
    "extra inputs are not permitted"."""
    d = diagnose(on_net("train {\n    optimiser: sgd lr=0.1\n}"))
    assert d.code == "E0206", d
    assert d.span.line == 4, d
    assert "did you mean `optimizer`?" in d.help, d


def test_E0207_layer_name_used_twice():
    d = diagnose(on_net("conv1: conv 8 k=3\nconv1: conv 8 k=3"))
    expect(d, "E0207", 4, 5, "the name `conv1` is used twice", label="state-dict keys")
    assert d.notes == ("first used at <string>:3:5",)


def test_E0208_block_recursion_too_deep():
    d = diagnose(spec("""
        block b(c) {
            b(c)
        }
        network n {
            input 3x32x32
            b(8)
        }
    """))
    expect(d, "E0208", 2, 5, "blocks call each other more than 32 deep",
           label="b -> b", help="a condition that stops it")


def test_E0209_repeat_count_too_large():
    d = diagnose(on_net("repeat 200000 {\n    relu\n}"))
    expect(d, "E0209", 3, 12, "repeat count 200,000 is over 100,000")


def test_E0209_too_many_layers():
    # 1000 x 201 = 201,000 layers: past any sane limit (cnnspec stops at its own).
    d = diagnose(on_net("repeat 1000 {\n    repeat 201 {\n        relu\n    }\n}"))
    expect(d, "E0209", 5, 13, "the network passes", help="repeat counts")
    assert "layers" in d.message


def test_E0210_import_cycle(tmp_path):
    write(tmp_path, "a.cnn", 'import "b.cnn"\nblock a1() {\n    relu\n}\n')
    write(tmp_path, "b.cnn", 'import "a.cnn"\nblock b1() {\n    relu\n}\n')
    main = write(tmp_path, "main.cnn", 'import "a.cnn"\nnetwork n {\n    input 3x8x8\n}\n')
    d = diagnose(main)
    expect(d, "E0210", 1, 1, "`a.cnn` imports itself in a cycle",
           label="a.cnn -> b.cnn -> a.cnn")
    assert d.span.file == str(tmp_path / "b.cnn")


def test_E0210_missing_import(tmp_path):
    main = write(tmp_path, "main.cnn",
                 'import "blocks/nothere.cnn"\nnetwork n {\n    input 3x8x8\n}\n')
    d = diagnose(main)
    expect(d, "E0210", 1, 1, "cannot import `blocks/nothere.cnn`",
           label="No such file or directory")
    assert str(tmp_path / "blocks" / "nothere.cnn") in d.label


def test_E0211_division_by_zero():
    d = diagnose(on_net("let y = 1 / 0\nrelu"))
    expect(d, "E0211", 3, 13, "division by zero", label="1 / 0")


def test_E0211_in_outside_a_layer():
    d = diagnose("network n(c = in.c) {\n    input 3x32x32\n}\n")
    expect(d, "E0211", 1, 11, "`in` means the input of a layer",
           label="no layer input here")


def test_E0211_in_h_of_a_flat_vector():
    # 3 * 32 * 32 = 3072 values after flatten.
    d = diagnose(on_net("flatten\nlinear in.h"))
    expect(d, "E0211", 4, 12, "`in.h` of a flat vector", label="3072 values")


def test_E0211_a_boolean_where_a_number_is_needed():
    d = diagnose(on_net("conv (true + 1) k=3"))
    expect(d, "E0211", 3, 11, "a number is needed here", label="found true")


def test_E0212_block_defined_twice():
    d = diagnose(spec("""
        block b() {
            relu
        }
        block b() {
            relu
        }
        network n {
            input 3x32x32
            b()
        }
    """))
    expect(d, "E0212", 4, 7, "block `b` is defined twice")
    assert d.notes == ("first defined at <string>:1:7",)


def test_E0213_several_networks_and_none_chosen():
    text = on_net("relu") + on_net("relu", header="network m {")
    d = diagnose(text)
    expect(d, "E0213", None, None, "defines 2 networks", label="n, m",
           help="--network NAME")


def test_E0213_no_network_at_all():
    d = diagnose("block b() {\n    relu\n}\n")
    expect(d, "E0213", None, None, "defines no network", label="only blocks")


def test_E0213_unknown_network_name_suggests_one():
    d = diagnose(on_net("relu", header="network resnet {"), network="resnt")
    expect(d, "E0213", None, None, "no network `resnt`", label="resnet",
           help="did you mean `resnet`?")


def test_E0214_network_without_input():
    d = diagnose("network n {\n    conv 8 k=3\n}\n")
    expect(d, "E0214", 2, 5, "network `n` must start with `input`",
           help="input 3x224x224")


def test_E0215_unknown_option():
    d = diagnose(on_net('option size = "floor"\nrelu'))
    expect(d, "E0215", 3, 5, "unknown option `size`", label="sizes",
           help="did you mean `sizes`?")


def test_E0216_second_input():
    d = diagnose(on_net("input 3x32x32"))
    expect(d, "E0216", 3, 5, "a network has one `input`")


def test_E0216_input_inside_a_block():
    d = diagnose(spec("""
        block b() {
            input 3x32x32
        }
        network n {
            input 3x32x32
            b()
        }
    """))
    expect(d, "E0216", 2, 5, "`input` belongs at the top level of a network",
           label="not allowed inside a block")


def test_E0217_join_without_branches():
    d = diagnose(on_net("concat {\n}"))
    expect(d, "E0217", 3, 5, "`concat` has no branches", help="one branch per line")


@pytest.mark.parametrize("construct", ["aux", "dense", "gate", "residual"])
def test_E0217_construct_with_an_empty_body(construct):
    """An empty `aux {}` (a head that is its input), `dense {}` (concat of the input
    with itself), `gate {}` or `residual {}` (x * x, x + x) is a mistake too."""
    d = diagnose(on_net(f"{construct} {{\n}}"))
    expect(d, "E0217", 3, 5, f"`{construct}` has no")


def test_E0218_spaced_star_after_a_space_form_call_is_ambiguous():
    d = diagnose(on_net("convs: conv 8 k=3 * 2"))
    expect(d, "E0218", 3, 21, "`*` here could multiply or repeat",
           label="multiplication", help="{ conv ... } * n")
    # Unambiguous forms are accepted: a glued product, parentheses, a repeat.
    for body in ("conv 8 k=3*1", "conv 8 k=(3 * 1)", "conv(8, k=3, p=1) * 2",
                 "{ conv 8 k=3 p=1 } * 2", "conv 2 * 4 k=1"):
        cnnspec.load(on_net(body))


# ---------------------------------------------------------------- E03xx: shapes


def test_E0301_unlabelled_layer_is_named_by_its_kind():
    """An unlabelled layer's position name `0` reads like the number zero:
    the message should say it is a conv."""
    # (32 - 3 + 0) / 2 + 1 = 29 / 2 + 1 = 15.5; 31 and 33 fit.
    d = diagnose(on_net("conv 8 k=3 s=2"))
    expect(d, "E0301", 3, 5, "output width is not a whole number",
           label="(32 - 3 + 2*0) / 2 + 1 = 15.5", help="31 or 33")
    assert "conv" in d.message, d


def test_E0301_exact_mode_refuses_a_floored_pool():
    # (224 - 3) / 2 + 1 = 221 / 2 + 1 = 111.5; 223 and 225 fit.
    d = diagnose(on_net('option sizes = "exact"\npool1: maxpool 3 s=2', input="3x224x224"))
    expect(d, "E0301", 4, 5, "`pool1` output width is not a whole number",
           label="(224 - 3 + 2*0) / 2 + 1 = 111.5", help="223 or 225")


def test_E0302_window_larger_than_the_input():
    # (4 - 7 + 0) / 1 + 1 = -2; padding by ceil((7 - 4) / 2) = 2 makes 8 >= 7.
    d = diagnose(on_net("c1: conv 8 k=7", input="3x4x4"))
    expect(d, "E0302", 3, 5, "the 7x7 window is larger than the padded input",
           label="(4 - 7 + 2*0) / 1 + 1 = -2", help="pad by 2")
    assert "`c1`" in d.message


def test_E0302_names_a_non_square_kernel_as_it_is():
    """A 7x1 kernel is not a "7x7 window"."""
    d = diagnose(on_net("c1: conv 8 k=(7, 1)", input="3x4x32"))
    expect(d, "E0302", 3, 5, "window is larger than the padded input",
           label="(4 - 7 + 2*0) / 1 + 1 = -2")
    assert "7x7" not in d.message and "7x1" in d.message, d


def test_E0303_concat_branches_differ():
    # Branch 1: 32 - 3 + 1 = 30; branch 2 pads by 1: 32 - 3 + 2 + 1 = 32.
    d = diagnose(on_net("concat {\n    conv 8 k=3\n    conv 8 k=3 p=1\n}"))
    expect(d, "E0303", 3, 5, "concat branches differ in size",
           label="8x30x30, 8x32x32", help="same height and width")


def test_E0303_residual_body_changes_channels():
    d = diagnose(on_net("residual {\n    conv 8 k=3 p=1\n}"))
    expect(d, "E0303", 3, 5, "add needs inputs of one shape",
           label="found 8x32x32, 3x32x32", help="shortcut auto")


def test_E0303_gate_does_not_broadcast():
    d = diagnose(on_net("gate {\n    conv 8 k=1\n}"))
    expect(d, "E0303", 3, 5, "multiply needs shapes that broadcast",
           label="found 3x32x32, 8x32x32")


def test_E0304_asserted_shape_is_wrong():
    # 32 - 3 + 2*1 + 1 = 32, not 30.
    d = diagnose(on_net("conv1: conv 64 k=3 p=1    -> 64x30x30"))
    expect(d, "E0304", 3, 31, "`conv1` is 64x32x32, not 64x30x30",
           label="the checker computes 64x32x32")


def test_E0305_groups_do_not_divide_input_channels():
    d = diagnose(on_net("conv 64 k=3 groups=2"))
    expect(d, "E0305", 3, 5, "groups=2 does not divide the 3 input channels",
           label="3 / 2 = 1.5")


def test_E0306_conv_after_flatten():
    d = diagnose(on_net("flatten\nconv 8 k=3"))
    expect(d, "E0306", 4, 5, "conv needs a C x H x W input",
           label="flat vector of 3072", help="before `flatten`")


def test_E0306_linear_before_flatten():
    d = diagnose(on_net("linear 10"))
    expect(d, "E0306", 3, 5, "linear needs a flat vector", label="found 3x32x32",
           help="add `flatten`")


def test_E0307_same_padding_with_stride():
    d = diagnose(on_net("conv 8 k=3 s=2 p=same"))
    expect(d, "E0307", 3, 5, "`padding=same` needs stride 1", label="found stride 2")


def test_E0308_pool_padding_more_than_half_the_kernel():
    d = diagnose(on_net("maxpool 3 s=2 p=2"))
    expect(d, "E0308", 3, 5, "maxpool padding 2 is more than half the kernel 3",
           label="2 > 3 // 2")


def test_E0310_affine_scale_for_too_few_channels():
    """`affine` gives one value per channel: two scales for an RGB input are refused
    where they are written, not broadcast or left to fail in torch."""
    d = diagnose(on_net("pre: affine scale=(0.5, 2) shift=(0, 0, 1)"))
    expect(d, "E0310", 3, 5, "affine gives 2 scale values for 3 channels",
           label="the input has 3 channels, scale has 2 values",
           help="one scale per input channel, or one number")
    assert "`pre`" in d.message


def test_E0310_affine_shift_for_too_many_channels():
    d = diagnose(on_net("flatten\naffine shift=(1, 2, 3)", input="2x1x1"))
    expect(d, "E0310", 4, 5, "affine gives 3 shift values for 2 channels",
           label="the input has 2 channels, shift has 3 values")


# ---------------------------------------------------------------- no traceback, ever


ODD_SPECS = [
    on_net("conv (8, 8) k=3"), on_net("conv 8 k=(3, 3, 3)"), on_net('conv "a" k=3'),
    on_net("let y = max()"), on_net("let y = int(1e300 * 1e300)"),
    on_net("maxpool"), on_net("maxpool global s=2"), on_net("adaptive_avgpool 0"),
    on_net("option bytes_per_element = 3"), on_net("train { init: normal std=0 }"),
    on_net("conv 8 k=3 -> 8x30"), on_net("relu * 1.5"), on_net('affine scale="a"'),
    on_net("affine shift=(1, (2, 3), 4)"), "}", "network", "{",
    "network n {\n    input 3x32x32\n    relu\n}\n}\n",
]


@pytest.mark.parametrize("text", ODD_SPECS)
def test_odd_spec_raises_SpecError_not_a_traceback(text):
    """Each must end in a SpecError, never in another exception."""
    with pytest.raises(SpecError) as info:
        cnnspec.load(text)
    assert info.value.diagnostics[0].code.startswith("E0")


# ---------------------------------------------------------------- the CLI


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnspec", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_cli_check_bad_file_exits_1_with_the_diagnostic_on_stderr(tmp_path):
    path = tmp_path / "alexnet224.cnn"
    path.write_text(ALEXNET_224, encoding="utf-8")
    result = cli("check", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "error[E0301]: `conv1` output width is not a whole number"
    assert lines[1] == f" --> {path}:3:5"
    assert lines[3] == "3 |     conv1: conv 96 k=11 s=4"
    assert "(224 - 11 + 2*0) / 4 + 1 = 54.25" in lines[4]


def test_cli_check_good_file_exits_0_silently():
    result = cli("check", "specs/alexnet.cnn")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_cli_check_missing_file_is_a_usage_error(tmp_path):
    result = cli("check", str(tmp_path / "nope.cnn"))
    assert result.returncode == 2
    assert "nope.cnn" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_flag_is_a_usage_error():
    result = cli("check", "--bogus", "specs/alexnet.cnn")
    assert result.returncode == 2
    assert "--bogus" in result.stderr


def test_cli_bad_set_is_a_usage_error():
    result = cli("check", "specs/alexnet.cnn", "--set", "classes")
    assert result.returncode == 2
    assert "NAME=VALUE" in result.stderr


def test_cli_unknown_parameter_is_a_spec_error():
    result = cli("check", "specs/alexnet.cnn", "--set", "clases=10")
    assert result.returncode == 1
    assert "error[E0203]" in result.stderr
    assert "specs/alexnet.cnn:" in result.stderr
    assert "did you mean `classes`?" in result.stderr


def test_cli_error_in_an_imported_file_names_that_file(tmp_path):
    (tmp_path / "blocks").mkdir()
    write(tmp_path / "blocks", "bad.cnn", "block b() {\n    batchnrom\n}\n")
    write(tmp_path, "main.cnn", """
        import "blocks/bad.cnn"
        network n {
            input 3x8x8
            b()
        }
    """)
    result = cli("check", "main.cnn", cwd=tmp_path)
    assert result.returncode == 1
    assert "error[E0202]" in result.stderr
    assert "blocks/bad.cnn:2:5" in result.stderr


# ---------------------------------------------------------------- names and references

def test_E0207_a_layer_named_input():
    d = diagnose(on_net("input: conv 8 k=1"))
    expect(d, "E0207", 3, 5, "the name `input` is used twice",
           label="state-dict keys and must be unique")
    assert d.notes == ("first used at <string>:2:5",), d


def test_E0220_without_a_message_says_the_condition_failed_where():
    d = diagnose(on_net("assert in.c == 4"))
    expect(d, "E0220", 3, 5, "assertion failed: this condition does not hold",
           label="false here", help="rules out")


def test_an_earlier_output_takes_no_arguments_and_no_label():
    d = diagnose(on_net("skip: conv 3 k=1\nskip 3"))
    expect(d, "E0205", 4, 10, "`skip` is the output of an earlier layer",
           label="it takes no arguments", help="`skip, crop 56`")
    d = diagnose(on_net("skip: conv 3 k=1\nx: skip"))
    expect(d, "E0206", 4, 5, "`skip` adds no layer to name",
           label="not a layer", help="drop the label")


def test_a_layer_kind_passed_to_a_block_is_checked_at_its_use():
    d = diagnose(spec("""
        block b(c, pool = maxpool) {
            conv c k=1
            pool 5
        }
        network n {
            input 3x4x4
            b(8)
        }
    """))
    assert d.span is not None and d.span.line == 3, d
    assert any("block `b` instantiated as" in note for note in d.notes), d
