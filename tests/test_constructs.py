"""Structure of the language: naming (the future state-dict keys), blocks, repeats,
branches and joins, residuals, dense and gated connections, auxiliary heads, imports,
options and the training recipe."""

import pytest

import cnnspec
from conftest import FRACTAL_BLOCK, SPECS


def names(spec):
    return spec.layer_names


def test_resnet18_names_are_torchvision_module_paths():
    spec = cnnspec.load(SPECS / "resnet18.cnn")
    # torchvision resnet18's named_modules() with parameters
    for name in ["conv1", "bn1", "layer1.0.conv1", "layer1.1.bn2", "layer2.0.conv1",
                 "layer2.0.downsample.0", "layer2.0.downsample.1", "layer4.1.conv2",
                 "fc"]:
        assert name in names(spec)
    assert "layer1.0.downsample.0" not in names(spec)  # shapes match: identity shortcut


def test_googlenet_names_follow_torchvision():
    spec = cnnspec.load(SPECS / "googlenet.cnn")
    for name in ["conv1.conv", "conv1.bn", "inception3a.branch1.conv",
                 "inception3a.branch2.0.conv", "inception3a.branch2.1.conv",
                 "inception3a.branch4.0", "inception3a.branch4.1.conv",
                 "aux1.conv.conv", "aux1.fc1", "aux2.fc2", "fc"]:
        assert name in names(spec)


def test_densenet_names_use_label_templates():
    spec = cnnspec.load(SPECS / "densenet121.cnn")
    assert "features.denseblock1.denselayer1.conv1" in names(spec)
    assert "features.denseblock4.denselayer16.conv2" in names(spec)
    assert "features.transition3.conv" in names(spec)
    assert "features.denseblock1.denselayer7.conv1" not in names(spec)


def test_vgg_unlabelled_layers_are_numbered_like_nn_sequential():
    spec = cnnspec.load(SPECS / "vgg16.cnn")
    convs = [n.name for n in spec.graph.nodes if n.op.op == "conv"]
    # torchvision vgg16: features.0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28
    assert convs == [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24,
                                               26, 28)]
    linears = [n.name for n in spec.graph.nodes if n.op.op == "linear"]
    assert linears == ["classifier.0", "classifier.3", "classifier.6"]


def test_chain_and_repeat_number_their_items():
    spec = cnnspec.load("""
    block unit(c) { conv: conv c k=3 p=1 }
    network n { input 3x8x8
        stage: unit(8), unit(16) * 2
        more:  unit(4) * 1
    }""")
    assert [n for n in names(spec) if n.endswith("conv")] == [
        "stage.0.conv", "stage.1.conv", "stage.2.conv", "more.0.conv"]


def test_duplicate_names_are_refused():
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load("network n { input 3x8x8\n a: relu\n a: relu }")
    assert caught.value.code == "E0207"


def test_block_defaults_keyword_arguments_and_lexical_scope():
    spec = cnnspec.load("""
    block b(c, k = 3, mid = c // 2) { x: conv mid k=k p=k // 2; y: conv c k=1 }
    network n(width = 32) { input 3x8x8
        one: b(width)
        two: b(16, mid=4, k=5)
    }""")
    assert spec.facts("one.x").shape == (16, 8, 8)
    assert spec.facts("two.x").params == 4 * 32 * 25 + 4


def test_network_parameters_can_be_overridden():
    spec = cnnspec.load(SPECS / "resnet18.cnn", classes=10)
    assert spec.output_shape == (10,)
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load(SPECS / "resnet18.cnn", clases=10)
    assert "did you mean `classes`" in str(caught.value)


def test_residual_auto_shortcut_projects_only_when_shapes_differ():
    text = """
    block b(c, s = 1) {
        residual { conv c k=3 s=s p=1 } shortcut proj: auto { conv c k=1 s=s }
    }
    network n { input 8x8x8
        keep: b(8)
        wider: b(16)
        smaller: b(16, s=2)
    }"""
    spec = cnnspec.load(text)
    assert "keep.proj.0" not in names(spec)
    assert "wider.proj.0" in names(spec) and "smaller.proj.0" in names(spec)
    assert spec.output_shape == (16, 4, 4)
    add = spec.graph.nodes[[n.name for n in spec.graph.nodes].index("keep.add")]
    assert len(add.inputs) == 2 and add.inputs[1] == 0  # identity: the input itself


def test_residual_if_adds_only_when_the_condition_holds():
    text = """
    block mb(c) { residual if in.c == c { conv c k=3 p=1 } }
    network n { input 8x4x4\n a: mb(8)\n b: mb(16) }"""
    spec = cnnspec.load(text)
    assert "a.add" in names(spec) and "b.add" not in names(spec)


def test_dense_concatenates_input_and_body():
    spec = cnnspec.load("network d { input 64x8x8\n"
                        "l: dense { conv 32 k=3 p=1 }\nm: dense { conv 32 k=3 p=1 } }")
    assert spec.facts("m.concat").shape == (128, 8, 8)


def test_gate_multiplies_the_input():
    spec = cnnspec.load("""network s { input 32x8x8
        let c = in.c
        se: gate { avgpool global; fc1: conv 8 k=1; relu; fc2: conv c k=1; sigmoid }
    }""")
    assert spec.facts("se.multiply").shape == (32, 8, 8)
    assert spec.facts("se.fc2").params == 8 * 32 + 32


def test_branches_repeat_inside_joins_explicit_cardinality():
    """ResNeXt (Xie et al. 2017, fig. 3): 32 paths of width 4 equal one grouped conv."""
    paths = cnnspec.load("""network p { input 256x14x14
        add { { conv 4 k=1 bias=false; conv 4 k=3 p=1 bias=false;
                conv 256 k=1 bias=false } * 32 } }""")
    grouped = cnnspec.load("""network g { input 256x14x14
        conv 128 k=1 bias=false; conv 128 k=3 p=1 groups=32 bias=false
        conv 256 k=1 bias=false }""")
    add = paths.graph.nodes[-1]
    assert len(add.inputs) == 32
    # Each path: 256*4 + 4*4*9 + 4*256 weights; the grouped form has the same total.
    assert paths.params == grouped.params == 32 * (256 * 4 + 4 * 4 * 9 + 4 * 256)
    assert paths.macs == grouped.macs


def test_recursive_blocks_fractalnet():
    """FractalNet (Larsson et al. 2017): f_1 = conv; f_C = mean(f_{C-1} o f_{C-1}, conv).
    A 4-column fractal holds 2^4 - 1 = 15 convs."""
    spec = cnnspec.load(FRACTAL_BLOCK + """
    network f { input 16x8x8\n fractal(16, 4) -> 16x8x8 }""")
    assert sum(n.op.op == "conv" for n in spec.graph.nodes) == 15
    means = [n.op for n in spec.graph.nodes if n.op.op == "mean"]
    assert len(means) == 7 and all(m.drop_path == 0.15 for m in means)


def _fractal_construct(columns, width=16):
    return cnnspec.load(f"""network f {{ input {width}x8x8
        body: fractal {columns} drop_path=0.15 {{ conv {width} k=3 p=1 }} -> {width}x8x8
    }}""")


@pytest.mark.parametrize("columns", [1, 2, 3, 4, 5])
def test_fractal_construct_equals_the_expansion_rule(columns):
    """`fractal` merges the joins that meet at one depth (the paper's figure 1); the
    layers, parameters and MACs are those of eq. 1-2 written as recursion."""
    construct = _fractal_construct(columns)
    recursive = cnnspec.load(FRACTAL_BLOCK + f"""
    network f {{ input 16x8x8\n fractal(16, {columns}) }}""")
    convs = [n for n in construct.graph.nodes if n.op.op == "conv"]
    assert len(convs) == 2 ** columns - 1
    assert construct.params == recursive.params
    assert construct.macs == recursive.macs
    for j in range(1, columns + 1):  # column j is 2^(j-1) convs long
        assert sum(n.name.startswith(f"body.column{j}.") for n in convs) == 2 ** (j - 1)


def test_fractal_joins_merge_the_columns_that_end_at_one_depth():
    spec = _fractal_construct(4)
    means = [(n.name, n.op.columns) for n in spec.graph.nodes if n.op.op == "mean"]
    # depth 2: columns 3, 4; depth 4: 2, 3, 4; depth 6: 3, 4; depth 8: all four.
    assert means == [("body.mean", (3, 4)), ("body.mean_1", (2, 3, 4)),
                     ("body.mean_2", (3, 4)), ("body.mean_3", (1, 2, 3, 4))]
    deepest = [n for n in spec.graph.nodes if n.name.startswith("body.column4.")]
    assert [n.name for n in deepest] == [f"body.column4.{i}" for i in range(8)]
    assert spec.facts("body.column4.7").receptive_field == (17, 17)


@pytest.mark.parametrize("text, code, where", [
    ("fractal 0 { conv 4 k=3 p=1 }", "E0206", "0"),
    ("fractal 17 { conv 4 k=3 p=1 }", "E0206", "17"),
    ("fractal columns=2 drop=0.1 { conv 4 k=3 p=1 }", "E0203", "drop=0.1"),
    ("fractal drop_path=0.1 { conv 4 k=3 p=1 }", "E0204", "fractal"),
    ("fractal 2 { }", "E0217", "fractal"),
    ("a: fractal 2 global_drop_path=0.5 { conv 4 k=3 p=1 }\n"
     "        b: fractal 3 global_drop_path=0.5 { conv 4 k=3 p=1 }", "E0219", "fractal 3"),
    ("global_drop_path: conv 4 k=1\n        fractal 2 { conv 4 k=3 p=1 }", "E0207",
     "fractal 2"),
])
def test_fractal_construct_diagnostics(text, code, where):
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load(f"network f {{ input 4x8x8\n        {text}\n}}")
    assert caught.value.code == code
    rendered = caught.value.render()
    assert where in rendered and "^" in rendered


def test_fractals_of_one_network_share_their_columns():
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load("""network f { input 4x8x8
            a: fractal 2 global_drop_path=0.5 { conv 4 k=3 p=1 }
            b: fractal 2 global_drop_path=0.25 { conv 4 k=3 p=1 }
        }""")
    problem = caught.value
    assert "`global_drop_path` differs" in str(problem)
    assert "global_drop_path=0.25 here, 0.5 in the first" in problem.render()
    assert "the first fractal is at" in problem.render()


def test_pad_channels_is_the_parameter_free_shortcut():
    """He et al. (2015) option A: subsample by 2 and append zero channels."""
    spec = cnnspec.load("""network a { input 16x32x32
        residual {
            conv 32 k=3 s=2 p=1 bias=false; batchnorm; relu
            conv 32 k=3 p=1 bias=false; batchnorm
        } shortcut { avgpool 1 s=2; pad_channels 32 }
    }""")
    assert spec.output_shape == (32, 16, 16)
    assert spec.params == 9 * 16 * 32 + 9 * 32 * 32 + 2 * 64
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load("network a { input 16x8x8\n pad_channels 8 }")
    problem = caught.value
    assert problem.code == "E0309"
    assert "16 > 8" in problem.render()


def test_drop_path_and_dropout_probabilities_are_validated():
    cnnspec.load("network d { input 8x4x4\n drop_path 0.2 }")
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load("network d { input 8x4x4\n drop_path 1.5 }")
    assert caught.value.code == "E0206"


def test_aux_heads_are_training_only_outputs():
    spec = cnnspec.load("""network a { input 8x8x8
        conv 8 k=3 p=1
        aux weight=0.4 { head: { avgpool global; flatten; linear 10 } }
        side: aux { flatten; linear 3 }
        avgpool global; flatten; fc: linear 10
    }""")
    assert [(o.name, o.weight) for o in spec.graph.outputs] == [
        ("main", 1.0), ("head", 0.4), ("side", 1.0)]
    assert spec.output_shape == (10,)
    aux_params = (8 * 10 + 10) + (512 * 3 + 3)
    assert spec.params - spec.inference_params == aux_params
    assert all(n.training_only for n in spec.graph.nodes if n.name.startswith("side"))


def test_imports_share_blocks_and_report_cycles(tmp_path):
    (tmp_path / "lib.cnn").write_text("block cbr(c) { conv c k=3 p=1; relu }\n")
    (tmp_path / "net.cnn").write_text('import "lib.cnn"\n'
                                      "network n { input 3x8x8\n a: cbr(4) }\n")
    assert cnnspec.load(tmp_path / "net.cnn").facts("a.0").shape == (4, 8, 8)
    (tmp_path / "x.cnn").write_text('import "y.cnn"\n')
    (tmp_path / "y.cnn").write_text('import "x.cnn"\n')
    (tmp_path / "z.cnn").write_text('import "x.cnn"\nnetwork n { input 3x8x8 }\n')
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load(tmp_path / "z.cnn")
    assert caught.value.code == "E0210"


def test_expressions_in_the_language():
    spec = cnnspec.load("""network e(alpha = 1.4) {
        input 3x32x32
        let w = make_divisible(32 * alpha, 8)
        a: conv w k=3 p=1
        b: conv max(16, in.c // 2) k=1
        c: conv (8 if in.c > 100 else 12) k=1
        d: conv round(2.5) + ceil(0.5) + floor(1.9) k=1
    } """)
    assert spec.facts("a").shape[0] == 48  # 44.8 -> nearest multiple of 8 is 48
    assert spec.facts("b").shape[0] == 24
    assert spec.facts("c").shape[0] == 12
    assert spec.facts("d").shape[0] == 4  # round(2.5) is 2 (banker's), +1 +1


def test_asserted_shapes_accept_expressions():
    cnnspec.load("network a(c = 4) { input 3x8x8\n conv c*2 k=1 -> (c*2) x 8 x 8 }")
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load("network a { input 3x8x8\n conv 8 k=3 -> 8x8x8 }")
    assert caught.value.code == "E0304"


def test_training_recipe_is_validated():
    spec = cnnspec.load(SPECS / "alexnet.cnn")
    recipe = spec.recipe
    assert recipe.optimizer.kind == "sgd" and recipe.optimizer.momentum == 0.9
    assert recipe.weight_decay == 0.0005 and recipe.batch == 128 and recipe.epochs == 90
    assert [a.kind for a in recipe.augment] == ["random_crop", "horizontal_flip",
                                                "pca_lighting"]
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load("network r { input 3x8x8\n train { optimizer: sgd lr=-1 } }")
    assert caught.value.code == "E0206" and caught.value.diagnostics[0].span.line == 2
    with pytest.raises(cnnspec.SpecError):
        cnnspec.load("network r { input 3x8x8\n train { optimizer: sgdd lr=0.1 } }")


def test_several_networks_need_a_choice():
    text = "network a { input 3x8x8 }\nnetwork b { input 1x8x8 }"
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load(text)
    assert caught.value.code == "E0213"
    assert cnnspec.load(text, network="b").input_shape == (1, 8, 8)


def test_summary_json_fields():
    summary = cnnspec.load(SPECS / "resnet18.cnn").summary().model_dump()
    for field in ["name", "input_shape", "output_shape", "params", "trainable_params",
                  "macs", "activation_bytes", "layers"]:
        assert field in summary
    for field in ["name", "op", "output_shape", "params", "macs", "receptive_field"]:
        assert field in summary["layers"][0]
    conv1 = summary["layers"][0]
    assert conv1["name"] == "conv1" and conv1["op"] == "conv 7x7/2, 64"
    assert conv1["output_shape"] == [64, 112, 112] and conv1["params"] == 9408


def test_keywords_can_label_layers():
    """torchvision's EfficientNet names a module `block`; a label may be any keyword."""
    spec = cnnspec.load("network t { input 8x4x4\n block: { conv 8 k=1 }\n"
                        " add: relu\n gate: { sigmoid } }")
    assert spec.layer_names == ["block.0", "add", "gate.0"]


def test_shortcut_and_else_can_label_layers_too():
    spec = cnnspec.load("network n { input 8x4x4\n relu\n shortcut: conv 8 k=1\n"
                        " residual { else: relu } }")
    assert "shortcut" in spec.layer_names and "else" in spec.layer_names
