"""`cnnspec lsp`: the language server spoken to as an editor does, over JSON-RPC on
stdin/stdout of a real subprocess (one per module), plus unit tests of the pure
analysis functions behind it. Buffers are sent as unsaved text: nothing in specs/
is written."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pygls")

from conftest import ROOT, SPECS

from cnnspec.lsp.analysis import Range, analyse, span_range
from cnnspec.lsp.client import Client
from cnnspec.lsp.complete import _current_item, completions, keywords
from cnnspec.lsp.hover import definition, hover, layer_signature
from cnnspec.lsp.outline import symbols
from cnnspec.lsp.server import DEBOUNCE

SERVER = [sys.executable, "-m", "cnnspec", "lsp"]
ALEXNET = SPECS / "alexnet.cnn"
RESNET18 = SPECS / "resnet18.cnn"
BLOCKS = SPECS / "blocks" / "resnet.cnn"


@pytest.fixture(scope="module")
def server():
    client = Client(SERVER, cwd=str(ROOT))
    client.initialize(ROOT)
    yield client
    client.kill()


class Document:
    """A buffer open in the server: didOpen on entry, didClose on exit."""

    def __init__(self, client: Client, path: Path, text: str | None = None):
        self.client, self.path = client, Path(path)
        self.text = self.path.read_text() if text is None else text
        self.version = 1

    def __enter__(self):
        self.client.drain()
        self.uri = self.client.open(self.path, self.text)
        return self

    def __exit__(self, *exc):
        self.client.notify("textDocument/didClose", {"textDocument": {"uri": self.uri}})

    def change(self, text: str) -> float:
        self.version += 1
        self.text = text
        sent = time.perf_counter()
        self.client.change(self.uri, text, self.version)
        return sent

    def diagnostics(self, timeout: float = 10.0) -> tuple[float, list]:
        """(arrival, diagnostics) of the publish for the current version."""
        arrived, params = self.client.wait_for(
            "textDocument/publishDiagnostics",
            lambda p: p["uri"] == self.uri and p.get("version") == self.version, timeout)
        return arrived, params["diagnostics"]

    def at(self, line: int, word: str, offset: int = 0) -> dict:
        """The position of `word` in 0-based `line`, as a request's params."""
        character = self.text.split("\n")[line].index(word) + offset
        return {"textDocument": {"uri": self.uri},
                "position": {"line": line, "character": character}}

    def request(self, method: str, params: dict):
        return self.client.request(method, params)


def line_of(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.split("\n")) if line.lstrip().startswith(start))


# ---------------------------------------------------------------- diagnostics


def test_typo_is_E0202_at_the_misspelt_token_within_a_second(server):
    with Document(server, ALEXNET) as doc:
        doc.diagnostics()
        sent = doc.change(doc.text.replace("relu1: relu", "relu1: rleu"))
        arrived, found = doc.diagnostics(timeout=5)
    assert arrived - sent < 1.0
    errors = [d for d in found if d["severity"] == 1]
    assert len(errors) == 1
    error = errors[0]
    assert error["code"] == "E0202" and error["source"] == "cnnspec"
    assert error["range"] == {"start": {"line": 8, "character": 11},
                              "end": {"line": 8, "character": 15}}
    assert "unknown layer or block `rleu`" in error["message"]
    assert "help: did you mean `relu`?" in error["message"]


def test_did_you_mean_is_a_quick_fix_that_repairs_the_typo(server):
    with Document(server, ALEXNET) as doc:
        _, clean = doc.diagnostics()
        doc.change(doc.text.replace("relu1: relu", "relu1: rleu"))
        _, found = doc.diagnostics()
        error = next(d for d in found if d["code"] == "E0202")
        actions = doc.request("textDocument/codeAction", {
            "textDocument": {"uri": doc.uri}, "range": error["range"],
            "context": {"diagnostics": [error]}})
        assert [a["title"] for a in actions] == ["Replace with `relu`"]
        assert actions[0]["kind"] == "quickfix" and actions[0]["isPreferred"]
        (edit,) = actions[0]["edit"]["changes"][doc.uri]
        assert edit == {"range": error["range"], "newText": "relu"}
        line = doc.text.split("\n")[8]
        fixed = line[:11] + edit["newText"] + line[15:]
        doc.change(doc.text.replace(line, fixed))
        assert doc.diagnostics()[1] == clean  # back to the lint warning alone
        nothing = doc.request("textDocument/codeAction", {
            "textDocument": {"uri": doc.uri}, "range": error["range"],
            "context": {"diagnostics": []}})
        assert not nothing


def test_quick_fix_replaces_only_the_misspelt_word(tmp_path):
    source = ("network n {\n    input 3x8x8\n    conv 4 k=3 strid=1\n"
              "    conv in.chanels k=1\n}\n")
    path = tmp_path / "n.cnn"
    first = analyse(source, path).problems[0]
    assert first.code == "E0203" and first.fix.text == "stride", first
    assert source.split("\n")[2][first.fix.range.start_character:
                                   first.fix.range.end_character] == "strid"
    fixed = source.replace("strid=", "stride=")
    second = analyse(fixed, path).problems[0]
    assert second.fix.text == "channels", second
    assert fixed.split("\n")[3][second.fix.range.start_character:
                                  second.fix.range.end_character] == "chanels"


def test_clean_file_publishes_an_empty_list(server):
    with Document(server, RESNET18) as doc:
        _, found = doc.diagnostics()
    assert found == []


def test_lint_warnings_come_as_warnings(server):
    with Document(server, ALEXNET) as doc:
        _, found = doc.diagnostics()
    assert [(d["code"], d["severity"]) for d in found] == [("W0401", 2)]
    assert found[0]["range"]["start"]["line"] == line_of(doc.text, "fc6:")


def test_parse_error_is_reported_at_its_token(server, tmp_path):
    text = "network n {\n    input 3x32x32\n    conv1 = conv 16 k=3\n}\n"
    with Document(server, tmp_path / "broken.cnn", text) as doc:
        _, found = doc.diagnostics()
    assert [d["code"] for d in found] == ["E0101"]
    assert found[0]["range"]["start"] == {"line": 2, "character": 10}
    assert "a layer is named with a colon" in found[0]["message"]


def test_blocks_only_and_several_networks_raise_nothing(server, tmp_path):
    with Document(server, BLOCKS) as doc:
        assert doc.diagnostics()[1] == []
    two = ("network a {\n input 3x8x8\n conv 4 k=3\n}\n"
           "network b {\n input 3x8x8\n conv 8 k=3\n}\n")
    with Document(server, tmp_path / "two.cnn", two) as doc:
        assert doc.diagnostics()[1] == []


def test_error_inside_an_imported_block_points_at_the_call(server):
    with Document(server, RESNET18) as doc:
        doc.diagnostics()
        doc.change(doc.text.replace("basic(512, stride=2)", "basic(512, stride=0)"))
        _, found = doc.diagnostics()
    line = line_of(doc.text, "layer4:")
    character = doc.text.split("\n")[line].index("basic")
    assert found[0]["range"] == {"start": {"line": line, "character": character},
                                 "end": {"line": line, "character": character + 5}}
    related = found[0]["relatedInformation"][0]["location"]
    assert related["uri"] == BLOCKS.resolve().as_uri()
    assert related["range"]["start"]["line"] == line_of(BLOCKS.read_text(), "conv1:")


def test_a_spec_follows_the_unsaved_block_file_it_imports(server, tmp_path):
    """Editing a block library re-checks the open specs that import it, against the
    editor's text of that library, before anything is saved."""
    (tmp_path / "blocks").mkdir()
    library = tmp_path / "blocks" / "pair.cnn"
    library.write_text("block pair(c) {\n    conv c k=3 p=1\n    relu\n}\n")
    spec = tmp_path / "net.cnn"
    spec.write_text('import "blocks/pair.cnn"\n\nnetwork net {\n    input 3x8x8\n'
                    "    body: pair(8)\n    avgpool global\n    flatten\n    linear 10\n}\n")
    with Document(server, library) as blocks:
        assert blocks.diagnostics()[1] == []  # before the next open drains the queue
        with Document(server, spec) as net:
            assert net.diagnostics()[1] == []
            blocks.change(blocks.text.replace("conv c k=3 p=1", "conv c k=3 s=2"))
            _, found = net.diagnostics()
            assert [d["code"] for d in found] == ["E0301"], found  # (8-3)/2 + 1 = 3.5
            assert found[0]["range"]["start"]["line"] == line_of(net.text, "body:")
            blocks.change(blocks.text.replace("k=3 s=2", "k=3 p=1"))
            assert net.diagnostics()[1] == []
    assert "p=1" in library.read_text()  # nothing was saved


def test_ranges_count_utf16_units(server, tmp_path):
    text = 'network n {\n    input 3x32x32\n    assert true, "\U0001F60B ok"; rleu\n}\n'
    with Document(server, tmp_path / "emoji.cnn", text) as doc:
        _, found = doc.diagnostics()
    # the emoji is one code point but two UTF-16 units: `rleu` starts at 26, not 25
    assert found[0]["code"] == "E0202"
    assert found[0]["range"]["start"] == {"line": 2, "character": 26}


def test_a_burst_of_changes_is_checked_once_for_the_last_version(server):
    with Document(server, ALEXNET) as doc:
        doc.diagnostics()
        good = doc.text
        for typo in ("rel", "rle", "rleu", "relux"):
            doc.change(good.replace("relu1: relu", f"relu1: {typo}"))
        _, message = server.wait_for("textDocument/publishDiagnostics",
                                     lambda p: p["uri"] == doc.uri)
    assert message["version"] == doc.version  # the earlier versions were never published
    assert "unknown layer or block `relux`" in message["diagnostics"][0]["message"]


def test_hovers_are_answered_while_a_long_check_runs(server, tmp_path):
    """Checking 16,000 layers takes about half a second on the check thread; hovers
    on another document, sent all along, are answered in the meantime."""
    text = ("network deep {\n    input 8x16x16\n"
            "    body: repeat 8000 { conv 8 k=3 p=1; relu }\n}\n")
    with Document(server, ALEXNET) as small:
        small.diagnostics()
        conv1 = small.at(line_of(small.text, "conv1:"), "conv1")
        small.request("textDocument/hover", conv1)
        with Document(server, tmp_path / "deep.cnn", text) as deep:
            deep.diagnostics(timeout=30)
            sent = deep.change(text.replace("p=1;", "p=1 ;"))
            answers = []
            while True:
                arrived, message = server.response(server.send_request(
                    "textDocument/hover", conv1))
                answers.append(arrived)
                try:
                    published, _ = deep.diagnostics(timeout=0.01)
                    break
                except TimeoutError:
                    pass
    assert "96x55x55" in message["result"]["contents"]["value"]
    checking = published - sent - DEBOUNCE
    assert checking > 0.3  # long enough for the test to mean something
    during = [t for t in answers if sent + DEBOUNCE + 0.1 < t < published - 0.01]
    assert len(during) >= 2, (checking, str([round(t - sent, 3) for t in answers]))


# ---------------------------------------------------------------- requests


def test_hover_on_alexnet_conv1_shows_shape_params_and_arithmetic(server):
    with Document(server, ALEXNET) as doc:
        doc.diagnostics()
        result = doc.request("textDocument/hover",
                             doc.at(line_of(doc.text, "conv1:"), "conv1"))
    text = result["contents"]["value"]
    assert result["contents"]["kind"] == "markdown"
    assert "96x55x55" in text and "34,944" in text
    assert "11*11*3*96 + 96 = 34,944" in text
    assert "(227 - 11 + 2*0) / 4 + 1 = 55" in text
    assert "- MACs: 105,415,200" in text and "- receptive field: 11" in text


def test_hover_on_a_block_call_shows_its_facts_and_signature(server):
    with Document(server, RESNET18) as doc:
        doc.diagnostics()
        line = line_of(doc.text, "layer1:")
        text = doc.request("textDocument/hover", doc.at(line, "basic"))["contents"]["value"]
    assert "**layer1**: 14 layers" in text and "- output: `64x56x56`" in text
    assert "- params: 147,968" in text  # 2 * (2 * 36,864 + 2 * 128)
    assert "block basic(c, stride = 1)" in text
    assert "Two 3x3 convs; the shortcut projects" in text


def test_definition_of_a_block_call_opens_the_imported_file(server):
    with Document(server, RESNET18) as doc:
        doc.diagnostics()
        found = doc.request("textDocument/definition",
                            doc.at(line_of(doc.text, "layer1:"), "basic", 2))
    assert found["uri"] == BLOCKS.resolve().as_uri()
    line = line_of(BLOCKS.read_text(), "block basic(")
    assert found["range"] == {"start": {"line": line, "character": 6},
                              "end": {"line": line, "character": 11}}


def test_definition_of_an_import_is_the_file(server):
    with Document(server, RESNET18) as doc:
        doc.diagnostics()
        found = doc.request("textDocument/definition",
                            doc.at(line_of(doc.text, "import"), "blocks"))
    assert found["uri"] == BLOCKS.resolve().as_uri()
    assert found["range"]["start"] == {"line": 0, "character": 0}


def test_completion_offers_layers_blocks_keywords_params_and_arguments(server):
    with Document(server, RESNET18) as doc:
        doc.diagnostics()
        line = line_of(doc.text, "avgpool:")
        at_statement = {"textDocument": {"uri": doc.uri},
                        "position": {"line": line, "character": 4}}
        labels = {i["label"] for i in
                  doc.request("textDocument/completion", at_statement)["items"]}
        assert {"conv", "batchnorm", "basic", "bottleneck", "residual", "repeat",
                "classes"} <= labels
        line = line_of(doc.text, "conv1:")
        after = doc.request("textDocument/completion",
                            doc.at(line, "k=7", 0))["items"]
    arguments = {i["label"]: i for i in after}
    assert {"stride=", "k=", "padding=", "bias="} <= set(arguments)
    assert "conv" not in arguments  # not a statement position


def test_document_symbols_are_the_layer_tree(server):
    with Document(server, ALEXNET) as doc:
        doc.diagnostics()
        found = doc.request("textDocument/documentSymbol", {"textDocument": {"uri": doc.uri}})
    assert [s["name"] for s in found] == ["alexnet"]
    layers = found[0]["children"]
    assert [s["name"] for s in layers[:4]] == ["conv1", "relu1", "pool1", "norm1"]
    assert layers[0]["detail"] == "conv 96 k=11 s=4 -> 96x55x55"
    with Document(server, BLOCKS) as doc:
        found = doc.request("textDocument/documentSymbol", {"textDocument": {"uri": doc.uri}})
    basic = found[0]
    assert basic["name"] == "basic" and basic["detail"] == "block basic(c, stride = 1)"
    residual = basic["children"][0]
    assert [s["name"] for s in residual["children"]][-1] == "downsample"


def test_shutdown_and_exit_end_the_process_with_0():
    client = Client(SERVER, cwd=str(ROOT))
    try:
        client.initialize(ROOT)
        assert client.shutdown() == 0
    finally:
        client.kill()


def test_without_pygls_it_says_what_to_install_and_exits_2():
    hide = ("import sys; sys.modules['pygls'] = sys.modules['lsprotocol'] = None; "
            "from cnnspec.cli import main; sys.exit(main(['lsp']))")
    run = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True,
                         check=False, timeout=60, cwd=ROOT)
    assert run.returncode == 2 and run.stdout == ""
    assert 'pip install "cnnspec[lsp]"' in run.stderr and "Traceback" not in run.stderr


# ---------------------------------------------------------------- analysis, no server


def test_span_range_is_zero_based_with_exclusive_end():
    found = analyse("network n {\n    input 3x8x8\n    batchnrom\n}\n", "/tmp/n.cnn")
    (problem,) = found.problems
    assert problem.code == "E0202"
    assert problem.range == Range(2, 4, 2, 13)  # `batchnrom` is columns 5..13, 1-based
    assert span_range(found.module.networks[0].name_span) == Range(0, 8, 0, 9)


def test_unsaved_text_resolves_imports_from_its_path():
    text = RESNET18.read_text().replace("fc:      linear", "fc:      lineer")
    found = analyse(text, RESNET18)
    assert [p.code for p in found.problems] == ["E0202"]
    assert set(found.blocks) == {"basic", "bottleneck"}
    assert analyse(RESNET18.read_text(), "/elsewhere/resnet18.cnn").problems[0].code == "E0210"


def test_hover_and_definition_without_a_server():
    text = ALEXNET.read_text()
    found = analyse(text, ALEXNET)
    line = line_of(text, "conv2:")
    card = hover(found, line, 6)
    assert "**conv2** `conv 5x5, 256`" in card and "- params: 614,656" in card
    network = line_of(text, "network alexnet")
    assert "network alexnet(classes = 1000)" in hover(found, network, 9)
    fc8 = line_of(text, "fc8:")
    target = definition(found, fc8, text.split("\n")[fc8].index("classes"))
    assert target.range == Range(network, 16, network, 30)  # the parameter `classes = 1000`


def test_hover_inside_a_block_lists_its_instances():
    text = ("block stage(c) {\n    conv1: conv c k=3 p=1\n    relu\n}\n"
            "network n {\n    input 3x8x8\n    a: stage(4)\n    b: stage(8)\n}\n")
    card = hover(analyse(text, "/tmp/n.cnn"), 1, 5)
    assert "2 instances of block `stage`" in card
    assert "a.conv1  conv 3x3, 4  4x8x8  112 params" in card  # 3*3*3*4 + 4
    assert "b.conv1  conv 3x3, 8  8x8x8  296 params" in card  # 3*3*4*8 + 8


def test_completion_contexts():
    assert _current_item("    conv1: conv 96 k") == " conv 96 k"
    assert _current_item("    layer2:  basic(128, str") == "  basic(128, str"
    assert _current_item("    denselayer{i + 1}: dense { conv 3") == " conv 3"
    assert {"residual", "shortcut", "else", "network"} <= set(keywords())
    found = analyse(RESNET18.read_text(), RESNET18)
    text = found.text + "\n"
    line = len(text.split("\n")) - 1
    near = completions(found, text + 'import "blo', line, 11)
    assert {"blocks/", "alexnet.cnn"} <= {c.label for c in near}
    assert "resnet18.cnn" not in {c.label for c in near}  # not itself
    assert {c.replace_from for c in near} == {8}  # the whole typed path is replaced
    inside = completions(found, text + 'import "blocks/re', line, 17)
    assert "blocks/resnet.cnn" in {c.label for c in inside}
    values = {c.label for c in completions(found, "network n {\n  conv 3 bias=", 1, 14)}
    assert {"true", "false"} <= values and "bias=" not in values


def test_layer_signature_comes_from_the_op_registry():
    text = layer_signature("conv")
    assert text.startswith("conv out_channels kernel_size=1 stride=1 padding=0")
    assert "positional: out_channels, kernel_size" in text and "s=stride" in text


def test_outline_of_a_group_nests_its_layers():
    text = ("network n {\n    input 3x8x8\n    features: {\n        conv1: conv 4 k=3\n"
            "        relu\n    }\n    flatten\n}\n")
    (network,) = symbols(analyse(text, "/tmp/n.cnn"))
    features, flatten = network.children
    assert features.kind == "group" and [c.name for c in features.children] == ["conv1", "relu"]
    assert features.detail.endswith("-> 4x6x6") and flatten.detail == "-> 144"


def test_outline_lists_recipes_and_their_entries():
    text = ("recipe base(lr = 0.1) {\n    optimizer: sgd lr=lr momentum=0.9\n"
            "    epochs: 5\n}\n\nrecipe longer(epochs = 90) {\n    train: base(lr = 0.2)\n"
            "    epochs: epochs\n}\n\nnetwork n {\n    input 3x8x8\n    conv 4 k=3\n"
            "    flatten\n    fc: linear 2\n    train: longer()\n}\n")
    base, longer, network = symbols(analyse(text, "/tmp/r.cnn"))
    assert (base.kind, base.detail) == ("recipe", "recipe base(lr = 0.1)")
    assert [(c.name, c.detail) for c in base.children] == [
        ("optimizer", "optimizer: sgd lr=lr momentum=0.9"), ("epochs", "epochs: 5")]
    assert [c.name for c in longer.children] == ["train: base", "epochs"]
    assert longer.children[0].selection_range.start_line == 6  # `base`, 0-based lines
    assert network.kind == "network" and [c.name for c in network.children][-1] == "fc"
