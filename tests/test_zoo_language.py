"""The language features the torchvision zoo and U-Net brought, against torch itself.

Each op's shape, parameters and values are compared with the PyTorch or torchvision
code that defines it (ConvTranspose2d, Upsample, torchvision's channel_shuffle and
ConvNeXt LayerNorm2d, center_crop, chunk); long skips, layer kinds as arguments,
dashed and numbered labels, the new functions, and the fixes for what a newcomer
ran into are checked by what a user sees.
"""

import shutil

import pytest
import torch
from conftest import SPECS
import torchvision.transforms.v2.functional as TF
from torch import nn
from torch.nn import functional as F
from torchvision.models.convnext import LayerNorm2d
from torchvision.models.shufflenetv2 import channel_shuffle

import cnnspec
from cnnspec.backends.codegen import to_python


def _net(body: str, shape: str = "8x6x6", blocks: str = "") -> str:
    return f"{blocks}\nnetwork n {{\n    input {shape}\n{body}\n}}\n"


def _build(source: str):
    spec = cnnspec.load(source)
    torch.manual_seed(0)
    return spec, cnnspec.build(spec).eval()


def _generated(spec):
    namespace: dict = {}
    exec(compile(to_python(spec), "n.py", "exec"), namespace)
    return namespace["N"]().eval()


@pytest.mark.parametrize("k,s,p,extra", [(2, 2, 0, 0), (3, 2, 1, 1), (4, 1, 0, 0)])
def test_conv_transpose_matches_torch(k, s, p, extra):
    spec, model = _build(_net(f"    up: deconv 5 k={k} s={s} p={p} output_padding={extra}"))
    reference = nn.ConvTranspose2d(8, 5, k, s, p, output_padding=extra)
    reference.load_state_dict(model.up.state_dict())
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(model(x), reference(x))
    assert spec.output_shape == tuple(reference(x).shape[1:])
    assert spec.params == sum(t.numel() for t in reference.parameters())
    assert spec.macs == 6 * 6 * 8 * 5 * k * k  # every input pixel times the kernel


def test_upsample_and_crop_match_torch():
    spec, model = _build(_net("    upsample 2 bilinear\n    crop (10, 8)"))
    x = torch.randn(1, 8, 6, 6)
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(model(x), TF.center_crop(up, [10, 8]))
    assert spec.output_shape == (8, 10, 8)


def test_crop_larger_than_its_input_is_e0311():
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load(_net("    crop 7"))
    assert info.value.code == "E0311" and "7x7 from 6x6" in str(info.value)


def test_split_and_shuffle_equal_shufflenet():
    spec, model = _build(_net(
        "    split { identity; b: { conv 4 k=1; relu } }\n    shuffle 2"))
    x = torch.randn(2, 8, 6, 6)
    left, right = x.chunk(2, dim=1)
    conv = model.get_submodule("b.0")
    expected = channel_shuffle(torch.cat([left, F.relu(conv(right))], 1), 2)
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(_load_into(_generated(spec), model)(x), expected)


def _load_into(generated, model):
    generated.load_state_dict(model.state_dict(), strict=True)
    return generated


def test_split_and_shuffle_refuse_channels_that_do_not_divide():
    for body in ("    split { identity; identity; identity }", "    shuffle 3"):
        with pytest.raises(cnnspec.SpecError) as info:
            cnnspec.load(_net(body))
        assert info.value.code == "E0310"


def test_layernorm_is_convnexts_layernorm2d_and_layer_scale_is_a_bare_parameter():
    spec, model = _build(_net(
        "    blk: residual {\n        norm: layernorm eps=1e-6\n"
        "        fc: linear 16 pointwise=true\n        layer_scale: layer_scale 0.5\n"
        "    }", shape="16x5x5"))
    assert spec.params == 2 * 16 + (16 * 16 + 16) + 16
    keys = set(model.state_dict())
    assert keys == {"blk.norm.weight", "blk.norm.bias", "blk.fc.weight", "blk.fc.bias",
                    "blk.layer_scale"}
    assert tuple(model.state_dict()["blk.layer_scale"].shape) == (16, 1, 1)
    reference_norm = LayerNorm2d(16, eps=1e-6)
    with torch.no_grad():
        model.get_submodule("blk.norm").weight.normal_()
        model.get_submodule("blk.norm").bias.normal_()
    reference_norm.load_state_dict(model.get_submodule("blk.norm").state_dict())
    fc = model.get_submodule("blk.fc")
    x = torch.randn(2, 16, 5, 5)
    channels_last = reference_norm(x).permute(0, 2, 3, 1)  # ConvNeXt's Permute + Linear
    pointwise = F.linear(channels_last, fc.weight, fc.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(model(x), x + 0.5 * pointwise)
    generated = _load_into(_generated(spec), model)
    torch.testing.assert_close(generated(x), model(x))


def test_an_earlier_label_joins_later_and_a_block_can_take_it():
    blocks = ("block up(c, skip) {\n    conv_transpose c k=2 s=2\n"
              "    let size = in.h\n    concat { skip, crop size; identity }\n}\n")
    spec, model = _build(_net(
        "    enc: conv 4 k=3 p=1\n    maxpool 2\n    mid: conv 8 k=1\n"
        "    dec: up(4, skip=enc)\n    out: concat { enc; identity }",
        shape="3x8x8", blocks=blocks))
    assert spec.output_shape == (12, 8, 8)
    x = torch.randn(1, 3, 8, 8)
    enc = model.enc(x)
    mid = model.mid(F.max_pool2d(enc, 2))
    up = model.get_submodule("dec.0")(mid)
    expected = torch.cat([enc, torch.cat([enc, up], 1)], 1)
    torch.testing.assert_close(model(x), expected)


def test_a_unet_skip_that_does_not_fit_explains_the_pooling_at_the_join():
    source = ("block dc(c) { conv c k=3 p=1; relu }\nnetwork n {\n"
              "    option sizes = floor\n    input 1x100x100\n"
              "    e1: dc(4)\n    maxpool 2\n    e2: dc(8)\n    maxpool 2\n"
              "    e3: dc(16)\n    maxpool 2\n    dc(32)\n"
              "    conv_transpose 16 k=2 s=2\n    j3: concat { e3; identity }\n}\n")
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load(source)
    text = str(info.value)
    assert info.value.code == "E0303"
    assert "16x25x25, 16x24x24" in text  # both shapes
    assert "(25 - 2 + 2*0) / 2 + 1 = 12.5 down to 12" in text  # the arithmetic
    assert info.value.diagnostics[0].span.line == 13  # the join's line


def test_layer_kinds_and_blocks_are_arguments():
    blocks = ("block unit(c, act = relu) {\n    conv c k=1\n    act\n}\n"
              "block twice { tanh; tanh }\n")
    spec, model = _build(_net("    a: unit(4)\n    b: unit(4, act=hardswish)\n"
                              "    c: unit(4, act=twice)", blocks=blocks))
    assert type(model.get_submodule("a.1")) is nn.ReLU
    assert type(model.get_submodule("b.1")) is nn.Hardswish
    assert type(model.get_submodule("c.1.1")) is nn.Tanh  # a block passed as `act`
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load(_net("    a: unit(4, act=3)", blocks=blocks))
    assert info.value.code == "E0202" and "is a value, not a layer" in str(info.value)


def test_dashed_and_numbered_labels():
    spec, model = _build(_net(
        "    repeat 2 as s {\n        stage{s + 1}: repeat 2 as i {\n"
        "            block{s + 1}-{i}: conv 8 k=1\n        }\n    }\n"
        "    tail: { 0: relu; 2: conv 8 k=1; 3: relu }"))
    names = [n for n, _ in model.named_modules() if n]
    assert "stage2.block2-1" in names and "tail.2" in names
    assert "stage2.block2-1.weight" in _generated(spec).state_dict()
    with pytest.raises(cnnspec.SpecError) as info:  # a computed part may not add `-`
        cnnspec.load(_net("    layer{0 - 1}: relu"))
    assert info.value.code == "E0206"


def test_log_pow_exp_and_regnets_quantization():
    # RegNetX-400MF's block 5 (Radosavovic et al. 2020): w0 24, wa 24.48, wm 2.54.
    spec = cnnspec.load(_net(
        "    let s = round(log((24 + 24.48 * 5) / 24) / log(2.54))\n"
        "    conv (round(24 * pow(2.54, s) / 8) * 8) k=1\n    conv (round(exp(0))) k=1"))
    import math
    capacity = round(math.log((24 + 24.48 * 5) / 24) / math.log(2.54))
    assert spec.table[1].shape[0] == round(24 * 2.54 ** capacity / 8) * 8 == 152
    assert spec.output_shape[0] == 1


def test_pad_channels_on_both_sides_as_cifar_resnets_do():
    spec, model = _build(_net("    pad_channels 16 where=both"))
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(model(x), F.pad(x, (0, 0, 0, 0, 4, 4)))
    generated = _generated(spec)
    torch.testing.assert_close(generated(x), F.pad(x, (0, 0, 0, 0, 4, 4)))


def test_what_a_newcomer_ran_into():
    # `* n - 1` needs parentheses, and the help says so
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load("network n(k = 3) {\n    input 8x6x6\n    layer2: relu * k - 1\n}\n")
    assert "`* (k - ...)`" in str(info.value)
    # `deconv` is the transposed conv, not a misspelt `dwconv`
    assert cnnspec.load(_net("    deconv 4 k=2 s=2")).output_shape == (4, 12, 12)
    # and a misspelt `deconv` is offered `deconv` (synonyms are candidates too)
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load(_net("    deconvv 4 k=2 s=2"))
    assert info.value.diagnostics[0].help == "did you mean `deconv`?"
    # E0206 inside a block names the call that made it
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load(_net("    first: b(4)", blocks="block b(c) { conv c k=3 p=-1 }"))
    assert info.value.code == "E0206"
    assert "block `b` instantiated as `first` at" in str(info.value)
    # an unnamed `shortcut auto` does not shift the names after it
    blocks = ("block res(c, s = 1) {\n    residual { conv c k=3 s=s p=1 }"
              " shortcut auto { conv c k=1 s=s }\n    relu\n}\n")
    model = _build(_net("    a: res(8)\n    b: res(16, s=2)", blocks=blocks))[1]
    names = {n for n, _ in model.named_modules()}
    assert {"a.2", "b.2", "b.shortcut.0"} <= names
    # inside `gate { }`, `in` is the layer's own input: the error says so
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load(_net("    gate { avgpool global; conv (in.c // 2) k=1;"
                          " conv in.c k=1; sigmoid }"))
    assert "`in` is each layer's own input, not the gate's" in str(info.value)


def test_a_label_cannot_hide_a_torch_module_method():
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load(_net("    double: { conv 4 k=3 }"))
    assert info.value.code == "E0206" and "`double` cannot name a layer" in str(info.value)


def test_the_reserved_names_are_exactly_the_torch_module_attributes():
    """The checker's list is written out so that checking never imports torch; it must
    follow the installed torch, or a label such as a new method's name would break the
    build (`add_module` refuses it) instead of getting E0206."""
    from cnnspec.frontend.elaborate import _MODULE_ATTRIBUTES
    public = {name for name in dir(nn.Module()) if not name.startswith("_")}
    assert public == _MODULE_ATTRIBUTES


def test_generated_block_keeps_a_setting_apart_from_an_argument_of_equal_value():
    """ConvNeXt's eps and layer-scale init are both 1e-6: the generated class must not
    write `eps=layer_scale_init`, or a caller changing the init would change eps."""
    source = to_python(cnnspec.load(
        "block b(scale = 1e-6) {\n    layernorm eps=1e-6\n    layer_scale scale\n}\n"
        "network n {\n    input 8x4x4\n    a: b()\n    c: b()\n}\n"))
    assert "LayerNorm2d(in_channels, eps=1e-06)" in source
    assert "torch.full((in_channels, 1, 1), scale)" in source


def test_a_shortcut_can_be_conditional():
    """RegNet projects when the width or the stride changes: on a 1x1 map a stride-2
    block keeps the shape, so `auto` would not project, `if` does."""
    blocks = ("block b(c, s) {\n    residual { conv c k=3 s=s p=1 }"
              " shortcut proj: if in.c != c or s != 1 { conv c k=1 s=s }\n}\n")
    spec, model = _build(_net("    x: b(8, 2)\n    y: b(8, 1)", shape="8x1x1",
                              blocks=blocks))
    names = {n for n, _ in model.named_modules()}
    assert "x.proj.0" in names and "y.proj" not in names
    x = torch.randn(1, 8, 1, 1)
    first = model.get_submodule("x.0")(x) + model.get_submodule("x.proj.0")(x)
    torch.testing.assert_close(model(x), model.get_submodule("y.0")(first) + first)


def test_assert_refuses_an_argument_with_its_message_and_the_call(tmp_path):
    source = (SPECS / "mobilenet_v3_small.cnn").read_text().replace(
        'bneck(3,  16,  16, true,  "RE", 2)', 'bneck(3,  16,  16, true,  "RX", 2)')
    assert '"RX"' in source
    shutil.copytree(SPECS / "blocks", tmp_path / "blocks")
    shutil.copytree(SPECS / "recipes", tmp_path / "recipes")
    (tmp_path / "bad.cnn").write_text(source)
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load(tmp_path / "bad.cnn")
    text = str(info.value)
    assert info.value.code == "E0220"
    assert "NL is RE (ReLU) or HS (h-swish)" in text
    assert "block `bneck` instantiated as `features.1`" in text


def test_a_label_is_looked_up_from_the_inner_scope_outwards():
    """`skip` inside `a.inner` is `a.inner.skip`, else `a.skip`, else `skip`: the
    nearest enclosing label wins (6 channels here, not the network's 3)."""
    blocks = ("block uses_skip { concat { skip; identity } }\n"
              "block outer { skip: conv 6 k=1; inner: uses_skip }\n"
              "block own { skip: conv 5 k=1; relu; concat { skip; identity } }\n")
    nested = cnnspec.load(_net("    skip: conv 3 k=1\n    a: outer", "3x4x4", blocks))
    assert nested.output_shape == (6 + 6, 4, 4)
    own = cnnspec.load(_net("    skip: conv 3 k=1\n    b: own", "3x4x4", blocks))
    assert own.output_shape == (5 + 5, 4, 4)
    top = cnnspec.load(_net("    skip: conv 3 k=1\n    c: uses_skip", "3x4x4", blocks))
    assert top.output_shape == (3 + 3, 4, 4)
