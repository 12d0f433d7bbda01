"""The checker's rules where square inputs hide mistakes: rectangular kernels, strides
and inputs (height and width kept apart), global pools and flatten, joins of branches
with different fields, and the wording and location of shape errors. Every expected
value is hand arithmetic written next to it (docs/costs.md gives the rules).

These tests were written against the survivors of `make mutate` on cnnspec/check.py
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
    a: conv 4 k=(3, 1) s=(1, 2)
    {layer}
    """)
    a, pool = spec.facts("a"), spec.facts("pool")
    assert a.shape[1:] == (19, 7) and (a.receptive_field, a.jump) == ((3, 1), (1, 2))
    # rf + (size - 1) * jump per axis: height 3 + 18 * 1 = 21, width 1 + 6 * 2 = 13;
    # the jump becomes jump * size: (1 * 19, 2 * 7)
    assert pool.receptive_field == (21, 13)
    assert pool.jump == (19, 14)


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
