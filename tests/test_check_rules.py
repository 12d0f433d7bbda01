"""The checker's rules where square inputs hide mistakes: rectangular kernels, strides
and inputs (height and width kept apart), global pools and flatten, joins of branches
with different fields, and the wording and location of shape errors. Every expected
value is hand arithmetic written next to it (docs/costs.md gives the rules).

These tests were written against the survivors of `make mutate` on cnnspec/frontend/check.py
(docs/testing.md): each kills mutants that the rest of the suite let through.
"""

import pytest

import cnnspec
from cnnspec.diagnostics import SpecError


def _load(body: str, input_shape="3x21x13") -> cnnspec.Spec:
    return cnnspec.load(f"network n {{\n    input {input_shape}\n{body}\n}}\n")


def _error(text: str):
    with pytest.raises(SpecError) as caught:
        cnnspec.load(text)
    return caught.value.diagnostics[0]


def test_rectangular_kernel_stride_and_dilation_keep_height_and_width_apart():
    spec = _load("""
    a: conv 4 k=(3, 5) s=(2, 1)
    b: conv 6 k=(1, 3) s=(1, 2) d=(1, 2)
    """)
    a, b = spec.facts("a"), spec.facts("b")
    # a: height (21 - 3) / 2 + 1 = 10, width (13 - 5) / 1 + 1 = 9
    assert a.shape == (4, 10, 9)
    # weights 4 * 3 * 3 * 5 = 180, biases 4; MACs 10 * 9 * 4 * (3 * 3 * 5) = 16,200
    assert (a.params, a.macs) == (184, 16_200)
    assert (a.receptive_field, a.jump) == ((3, 5), (2, 1))
    # b: height 10, width: span 2 * (3 - 1) + 1 = 5, (9 - 5) / 2 + 1 = 3
    assert b.shape == (6, 10, 3)
    # weights 6 * 4 * 1 * 3 = 72 + 6; MACs 10 * 3 * 6 * (4 * 1 * 3) = 2,160
    assert (b.params, b.macs) == (78, 2_160)
    # rf: height 3 + 0 * 2 = 3, width 5 + 2 * (3 - 1) * 1 = 9; jump (2 * 1, 1 * 2)
    assert (b.receptive_field, b.jump) == ((3, 9), (2, 2))


def test_counts_are_whole_numbers():
    spec = _load("    a: conv 8 k=3 g=1")
    facts = spec.facts("a")
    assert type(facts.params) is int and type(facts.macs) is int
    assert type(spec.params) is int and type(spec.macs) is int


def test_grouped_conv_counts_taps_per_group():
    spec = _load("    a: conv 6 k=(3, 1) g=3", "6x5x4")
    # each output sees 6 / 3 = 2 input channels: 6 * 2 * 3 * 1 = 36 weights + 6
    assert spec.facts("a").params == 42
    assert spec.facts("a").macs == 3 * 4 * 6 * (2 * 3 * 1)


def test_same_padding_keeps_a_rectangular_size_and_grows_the_field():
    spec = _load("    a: conv 4 k=(3, 5) d=(2, 1) p=same")
    a = spec.facts("a")
    assert a.shape == (4, 21, 13)
    # height 1 + 2 * (3 - 1) = 5, width 1 + 1 * (5 - 1) = 5; stride 1 keeps the jump
    assert (a.receptive_field, a.jump) == ((5, 5), (1, 1))


def test_same_padding_with_a_stride_names_the_stride():
    diagnostic = _error("network n {\n    input 3x8x8\n    conv 4 k=3 s=(2, 1) p=same\n}\n")
    assert diagnostic.code == "E0307"
    assert diagnostic.label == "found stride 2x1"
    assert diagnostic.help == "PyTorch refuses it too; pad by (kernel_size - 1) // 2"


@pytest.mark.parametrize("layer", ["pool: avgpool global", "pool: maxpool global",
                                   "pool: flatten"])
def test_global_pool_and_flatten_see_the_whole_rectangular_input(layer):
    spec = _load(f"""
    a: conv 4 k=(3, 1) s=(2, 3)
    {layer}
    """)
    a, pool = spec.facts("a"), spec.facts("pool")
    # height (21 - 3) / 2 + 1 = 10, width (13 - 1) / 3 + 1 = 5
    assert a.shape[1:] == (10, 5) and (a.receptive_field, a.jump) == ((3, 1), (2, 3))
    # rf + (size - 1) * jump per axis: height 3 + 9 * 2 = 21, width 1 + 4 * 3 = 13;
    # the jump becomes jump * size: (2 * 10, 3 * 5)
    assert pool.receptive_field == (21, 13)
    assert pool.jump == (20, 15)


def test_a_flat_input_leaves_the_field_alone():
    spec = _load("""
    flatten
    fc: linear 5
    f2: flatten
    """, "2x3x4")
    assert spec.facts("f2").shape == (5,)
    assert spec.facts("f2").receptive_field == spec.facts("fc").receptive_field == (3, 4)


def test_joins_take_the_widest_field_per_axis():
    spec = _load("""
    j: concat {
        tall: conv 2 k=(5, 1) p=(2, 0)
        wide: conv 2 k=(1, 3) p=(0, 1)
    }
    s: add {
        conv 4 k=(1, 1) s=(2, 1)
        conv 4 k=(1, 1) s=(2, 1)
    }
    """)
    j = spec.facts("j.concat")
    assert j.shape == (4, 21, 13)
    # height from `tall` (5), width from `wide` (3)
    assert (j.receptive_field, j.jump) == ((5, 3), (1, 1))
    assert spec.facts("s.add").jump == (2, 1)


def test_a_wrong_third_assertion_is_reported_at_its_layer():
    diagnostic = _error("network n {\n    input 1x8x8\n    a: conv 2 k=3 -> 2x6x6\n"
                        "    b: conv 2 k=3 -> 2x4x4\n    c: conv 2 k=3 -> 2x3x3\n}\n")
    assert diagnostic.code == "E0304"
    assert diagnostic.message == "`c` is 2x2x2, not 2x3x3"
    assert diagnostic.span.line == 5
    assert diagnostic.notes == ("in `c`",)


def test_errors_inside_a_block_name_the_call_chain():
    text = ("block inner(c) {\n    conv c k=5\n}\n"
            "block outer(c) {\n    x: inner(c)\n}\n"
            "network n {\n    input 1x6x6\n    o: outer(4)\n    p: outer(4)\n}\n")
    diagnostic = _error(text)
    assert diagnostic.code == "E0302"
    # The unnamed conv is described by its kind and position; each enclosing block
    # call is a note, innermost first.
    assert diagnostic.message.endswith("at conv `p.x.0`")
    assert diagnostic.notes == ("block `inner` instantiated as `p.x` at <string>:5:8",
                                "block `outer` instantiated as `p` at <string>:10:8")


def test_a_named_layer_is_described_by_its_name_alone():
    diagnostic = _error("network n {\n    input 1x4x4\n    c1: conv 2 k=7\n}\n")
    assert diagnostic.message == "the 7x7 window is larger than the padded input at `c1`"
    assert diagnostic.help == ("the input width is 4; pad by 2 or remove a downsampling "
                               "layer before this one")
    assert diagnostic.label == "(4 - 7 + 2*0) / 1 + 1 = -2"


def _help_of(size: int, kernel: int, stride: int, padding: int) -> str:
    return _error(f"network n {{\n    input 1x{size}x{size}\n"
                  f"    c: conv 1 k={kernel} s={stride} p={padding}\n}}\n").help


def test_an_uneven_size_suggests_the_sizes_and_padding_that_fit():
    # AlexNet at 224: (224 - 11) / 4 + 1 = 54.25, 1 pixel left over; 224 - 1 = 223 and
    # 224 + 4 - 1 = 227 fit. Padding 1-4 gives 215, 217, 219, 221 over stride 4: none.
    assert _help_of(224, 11, 4, 0) == ("the input must be 223 or 227 for stride 4 to fit; "
                                       "`option sizes = floor` floors like PyTorch")
    # (32 - 5 + 2*1) / 3 = 29 / 3, 2 left over: 30 and 33 fit; padding 2 gives 31 / 3,
    # padding 3 gives 33 / 3 = 11.
    assert _help_of(32, 5, 3, 1) == ("the input must be 30 or 33 for stride 3 to fit "
                                     "(or pad by 3); `option sizes = floor` floors like "
                                     "PyTorch")


@pytest.mark.parametrize("size, kernel, stride, padding", [
    (224, 11, 4, 0), (10, 3, 2, 0), (32, 5, 3, 1), (17, 2, 4, 0), (50, 7, 2, 0),
    (30, 3, 4, 0)])
def test_every_suggested_size_and_padding_really_fits(size, kernel, stride, padding):
    help = _help_of(size, kernel, stride, padding)
    sizes = help.split("the input must be ")[1].split(" for stride")[0].split(" or ")
    assert sizes
    for fit in map(int, sizes):
        spec = cnnspec.load(f"network n {{\n    input 1x{fit}x{fit}\n"
                            f"    c: conv 1 k={kernel} s={stride} p={padding}\n}}\n")
        assert (fit + 2 * padding - kernel) % stride == 0, fit
        assert spec.output_shape[1] == (fit + 2 * padding - kernel) // stride + 1
    if "(or pad by " in help:
        pad = int(help.split("(or pad by ")[1].split(")")[0])
        # the smallest padding above the current one that fits
        assert pad == next(p for p in range(padding + 1, padding + stride + 1)
                           if (size + 2 * p - kernel) % stride == 0)
        cnnspec.load(f"network n {{\n    input 1x{size}x{size}\n"
                     f"    c: conv 1 k={kernel} s={stride} p={pad}\n}}\n")
    else:
        assert all((size + 2 * p - kernel) % stride
                   for p in range(padding + 1, padding + stride + 1))


def test_a_height_that_does_not_fit_is_reported_as_the_height():
    # width (13 - 3) / 2 + 1 = 6 fits; height (20 - 3) / 2 + 1 = 9.5 does not
    diagnostic = _error("network n {\n    input 1x20x13\n    c: conv 1 k=3 s=2\n}\n")
    assert diagnostic.code == "E0301"
    assert diagnostic.message == "`c` output height is not a whole number"
    assert diagnostic.label == "(20 - 3 + 2*0) / 2 + 1 = 9.5"


def test_a_window_larger_than_the_input_shows_the_formula_with_its_stride():
    diagnostic = _error("network n {\n    input 1x9x4\n    c: conv 1 k=7 s=2\n}\n")
    assert diagnostic.code == "E0302"
    # (4 - 7 + 0) / 2 + 1 = -0.5
    assert diagnostic.label == "(4 - 7 + 2*0) / 2 + 1 = -0.5"


def test_same_padding_with_a_square_stride_names_it_once():
    diagnostic = _error("network n {\n    input 3x8x8\n    conv 4 k=3 s=2 p=same\n}\n")
    assert (diagnostic.code, diagnostic.label) == ("E0307", "found stride 2")
    assert diagnostic.message.startswith("`padding=same` needs stride 1")


def test_layers_in_the_wrong_place_say_what_to_do():
    flat = _error("network n {\n    input 1x4x4\n    flatten\n    c: conv 2 k=1\n}\n")
    assert flat.code == "E0306"
    assert flat.help == "spatial layers go before `flatten`"
    image = _error("network n {\n    input 1x4x4\n    fc: linear 2\n}\n")
    assert image.code == "E0306"
    assert image.help == "add `flatten` (or `avgpool global` then `flatten`) before it"


def test_a_wrong_second_assertion_is_not_skipped():
    diagnostic = _error("network n {\n    input 1x8x8\n    a: conv 2 k=3 -> 2x6x6\n"
                        "    b: conv 2 k=3 -> 2x5x5\n    c: conv 2 k=3 -> 2x2x2\n}\n")
    assert diagnostic.code == "E0304"
    assert diagnostic.message == "`b` is 2x4x4, not 2x5x5"
