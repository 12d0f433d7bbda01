"""Generate docs/architectures.md: every network in specs/ in one cost table, then the
short story of what each architecture introduced.

Run:  .venv/bin/python docs/make_architectures.py          (rewrites docs/architectures.md)
      .venv/bin/python docs/make_architectures.py --check  (exit 1 if it is out of date)

The table is read from the specs themselves (`cnnspec.load`, eval-mode costs as
`cnnspec compare` reports them), so a spec change shows up here when the script is
run again; tests/test_architectures_doc.py fails while docs/architectures.md lags.
The stories below (STORIES) are hand-written and kept in this script.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))  # _generated.py, also when loaded from a test

from _generated import write_or_check  # noqa: E402

import cnnspec  # noqa: E402
from cnnspec.analyses.compare import weighted_depth  # noqa: E402
from cnnspec.analyses.summary import human, human_bytes  # noqa: E402

SPECS = ROOT / "specs"
OUTPUT = ROOT / "docs" / "architectures.md"

# Families in order of publication: (pattern on the network name, family, story anchor).
# A spec whose name matches none lands after them, in a family named after its name.
FAMILIES = [
    (r"lenet", "LeNet", "lenet-5"),
    (r"alexnet", "AlexNet", "alexnet"),
    (r"zfnet", "ZFNet", "zfnet"),
    (r"vgg", "VGG", "vgg"),
    (r"nin(_|\d|$)|network_in_network", "Network in Network", "network-in-network"),
    (r"googlenet|inception", "GoogLeNet / Inception", "googlenet--inception"),
    (r"preact|pre_act", "Pre-activation ResNet", "pre-activation-resnet"),
    (r"wide_resnet|wrn(_|\d)", "Wide ResNet", "wide-resnet"),
    (r"resnext", "ResNeXt", "resnext"),
    (r".*stochastic", "Stochastic depth", "stochastic-depth"),
    (r"resnet", "ResNet", "resnet"),
    (r"fractal", "FractalNet", "fractalnet"),
    (r"squeezenet", "SqueezeNet", "squeezenet"),
    (r"densenet", "DenseNet", "densenet"),
    (r"efficientnet", "EfficientNet", "efficientnet"),
    (r"mobilenet", "MobileNet", "mobilenet"),
    (r"mnasnet", "MnasNet", "mnasnet"),
    (r"shufflenet", "ShuffleNet", "shufflenet"),
    (r"regnet", "RegNet", "regnet"),
    (r"convnext", "ConvNeXt", "convnext"),
    (r"unet", "U-Net", "u-net"),
]
# Display order of the families (the list above is in matching order: `wide_resnet`
# and `resnext` must be tried before `resnet`).
ORDER = ["LeNet", "AlexNet", "ZFNet", "VGG", "Network in Network", "GoogLeNet / Inception",
         "ResNet", "Pre-activation ResNet", "Wide ResNet", "ResNeXt", "Stochastic depth",
         "FractalNet", "SqueezeNet", "DenseNet", "MobileNet", "ShuffleNet", "MnasNet",
         "EfficientNet", "RegNet", "ConvNeXt", "U-Net"]

# What each architecture introduced: (heading, citation, story). Hand-written.
STORIES = [
    ("LeNet-5",
     'LeCun, Bottou, Bengio & Haffner (1998), "Gradient-Based Learning Applied to '
     'Document Recognition", *Proceedings of the IEEE*.',
     "The template every later network follows: convolutions with shared weights, "
     "subsampling, and fully connected layers on top, trained end to end by "
     "backpropagation. With about 60 thousand parameters it read handwritten digits "
     "and bank cheques in production in the 1990s. The spec is the classic 32x32 "
     "single-channel version."),
    ("AlexNet",
     'Krizhevsky, Sutskever & Hinton (2012), "ImageNet Classification with Deep '
     'Convolutional Neural Networks", *NeurIPS*.',
     "Won ImageNet 2012 by a wide margin and started the deep-learning era in vision. "
     "It scaled LeNet's recipe up (five conv and three fc layers, 60 million "
     "parameters) and made it trainable with ReLU activations, dropout, heavy data "
     "augmentation and two GPUs. `alexnet.cnn` is the paper's single-tower network "
     "with local response normalisation; `alexnet_torchvision.cnn` is torchvision's "
     "later variant (Krizhevsky 2014, \"One weird trick ...\")."),
    ("ZFNet",
     'Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks", '
     "*ECCV*.",
     "Used a deconvolutional network to project feature activations back to pixels, "
     "showing what each layer responds to. The pictures exposed aliasing in AlexNet's "
     "first layers, and the fix (a 7x7 stride-2 first conv instead of 11x11 stride 4) "
     "won ImageNet 2013."),
    ("VGG",
     'Simonyan & Zisserman (2015), "Very Deep Convolutional Networks for Large-Scale '
     'Image Recognition", *ICLR* (arXiv 2014).',
     "Showed that depth itself matters: stacks of plain 3x3 convolutions, 11 to 19 "
     "layers, two 3x3 convs seeing what one 5x5 sees with fewer parameters and an "
     "extra non-linearity. Its uniform design made it the default backbone for "
     "years, at the price of about 140 million parameters, most of them in the "
     "first fc layer. The `_bn` specs are torchvision's variants with batchnorm."),
    ("Network in Network",
     'Lin, Chen & Yan (2014), "Network In Network", *ICLR* (arXiv 2013).',
     "Replaced each linear convolution by a small multilayer perceptron sliding over "
     "the image, which is a stack of 1x1 convolutions. It also replaced the fully "
     "connected classifier by global average pooling over one feature map per "
     "class. Both ideas, the 1x1 conv and the global pool, are in nearly every later "
     "network."),
    ("GoogLeNet / Inception",
     'Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke & Rabinovich '
     '(2015), "Going Deeper with Convolutions", *CVPR* (arXiv 2014).',
     "The Inception module runs 1x1, 3x3 and 5x5 convolutions and a pool side by side "
     "and concatenates them, with 1x1 convolutions first reducing the channels so the "
     "wide module stays cheap (compare `inception_naive.cnn`, the module without "
     "them). 22 layers deep with 12 times fewer parameters than AlexNet, it won "
     "ImageNet 2014; two auxiliary classifiers, used only in training, inject "
     "gradient into the middle of the network."),
    ("ResNet",
     'He, Zhang, Ren & Sun (2016), "Deep Residual Learning for Image Recognition", '
     "*CVPR* (arXiv 2015).",
     "Each block learns a residual added to an identity shortcut, so a deeper network "
     "can always fall back to the shallower one and gradients flow through the "
     "shortcuts. That cured the degradation of very deep plain networks: 152 layers "
     "won ImageNet 2015. The bottleneck block (1x1 reduce, 3x3, 1x1 expand) keeps "
     "ResNet-50 and deeper affordable."),
    ("Pre-activation ResNet",
     'He, Zhang, Ren & Sun (2016), "Identity Mappings in Deep Residual Networks", '
     "*ECCV*.",
     "Moved batchnorm and ReLU before each convolution (BN-ReLU-conv), so the shortcut "
     "path is a pure identity from input to output with nothing applied after the "
     "addition. Signals and gradients then pass between any two blocks unchanged, and "
     "a 1001-layer network trained well on CIFAR."),
    ("Wide ResNet",
     'Zagoruyko & Komodakis (2016), "Wide Residual Networks", *BMVC*.',
     "Argued that residual networks should be wider rather than thinner and deeper: "
     "widening each block's channels by a factor k, with dropout between its convs, "
     "gave a 16-layer network that beat 1000-layer thin ones and trained faster on "
     "GPUs. torchvision's `wide_resnet50_2` doubles the bottleneck width of ResNet-50."),
    ("ResNeXt",
     'Xie, Girshick, Dollár, Tu & He (2017), "Aggregated Residual Transformations for '
     'Deep Neural Networks", *CVPR* (arXiv 2016).',
     "Added cardinality, the number of parallel paths in a block, as a dimension next "
     "to depth and width. The paths are implemented as one grouped 3x3 convolution "
     "(32 groups in `resnext50_32x4d`), which at the same cost as ResNet's bottleneck "
     "gives better accuracy."),
    ("Stochastic depth",
     'Huang, Sun, Liu, Sedra & Weinberger (2016), "Deep Networks with Stochastic '
     'Depth", *ECCV*.',
     "A training procedure for residual networks: each mini-batch drops a random "
     "subset of residual blocks, keeping only their identity shortcuts, with the "
     "survival probability falling linearly with depth. Training gets faster and "
     "regularised, like an ensemble of shallower networks, while the full network is "
     "used at test time."),
    ("FractalNet",
     'Larsson, Maire & Shakhnarovich (2017), "FractalNet: Ultra-Deep Neural Networks '
     'without Residuals", *ICLR* (arXiv 2016).',
     "Built depth from a self-similar expansion rule, joining sub-paths of different "
     "depths by averaging, with no residual additions. With drop-path regularisation "
     "it matched ResNets, suggesting that what matters is short paths through the "
     "network during training, not the residual form."),
    ("DenseNet",
     'Huang, Liu, van der Maaten & Weinberger (2017), "Densely Connected '
     'Convolutional Networks", *CVPR*.',
     "Inside a dense block every layer receives the concatenated feature maps of all "
     "layers before it and adds only a few new channels (the growth rate, 32 in "
     "DenseNet-121). Feature reuse gives ResNet-like accuracy with far fewer "
     "parameters (8 million for DenseNet-121), at the price of large activation "
     "memory; transition layers with 1x1 convs and pooling shrink it between blocks."),
    ("SqueezeNet",
     'Iandola, Han, Moskewicz, Ashraf, Dally & Keutzer (2016), "SqueezeNet: '
     'AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size", arXiv.',
     "Designed for few parameters: Fire modules squeeze the channels with 1x1 convs "
     "and expand them again with a mix of 1x1 and 3x3 convs, downsampling happens "
     "late, and a final conv with global average pooling replaces the fc layers. It "
     "matched AlexNet's ImageNet accuracy with about 1.2 million parameters. Version "
     "1.1 cuts computation by 2.4x at the same accuracy."),
    ("EfficientNet",
     'Tan & Le (2019), "EfficientNet: Rethinking Model Scaling for Convolutional '
     'Neural Networks", *ICML*.',
     "Scales depth, width and input resolution together with one compound "
     "coefficient instead of one at a time. The base network B0, found by neural "
     "architecture search, is built from inverted-residual (MBConv) blocks with "
     "depthwise convs and squeeze-and-excitation; B1 to B7 scale it up, reaching the "
     "best ImageNet accuracy of its time with several times fewer parameters and "
     "MACs than earlier networks. EfficientNetV2 (Tan & Le 2021, \"Smaller Models "
     "and Faster Training\") replaces the early MBConv stages by fused ones (one "
     "full 3x3 conv instead of a 1x1 expansion and a depthwise conv), which train "
     "faster on accelerators; its S, M and L share one stage table format."),
    ("MobileNet",
     'Sandler, Howard, Zhu, Zhmoginov & Chen (2018), "MobileNetV2: Inverted Residuals '
     'and Linear Bottlenecks", *CVPR*; Howard et al. (2019), "Searching for '
     'MobileNetV3", *ICCV*.',
     "Networks for phones. V2's block expands a thin tensor with a 1x1 conv, filters "
     "it depthwise and projects it back without a nonlinearity (a linear bottleneck), "
     "with the residual between the thin ends. V3 keeps the block, adds squeeze-and-"
     "excitation and the cheap hard-swish activation, and takes its layer table from "
     "architecture search; Small and Large share every block."),
    ("ShuffleNet",
     'Ma, Zhang, Zheng & Sun (2018), "ShuffleNet V2: Practical Guidelines for '
     'Efficient CNN Architecture Design", *ECCV*.',
     "Measured speed rather than counted operations. A unit splits its channels in "
     "two, passes one half unchanged and sends the other through a 1x1, depthwise "
     "3x3, 1x1 branch of equal width, concatenates the halves and shuffles the "
     "channels so that information crosses between them in the next unit. The specs "
     "say this with `split { }` and `shuffle 2`."),
    ("MnasNet",
     'Tan, Chen, Pang, Vasudevan, Sandler, Howard & Le (2019), "MnasNet: '
     'Platform-Aware Neural Architecture Search for Mobile", *CVPR*.',
     "Architecture search with measured phone latency in the reward. The result is a "
     "MobileNetV2-like stack of inverted residuals with 3x3 and 5x5 kernels; the four "
     "torchvision widths come from one width multiplier, applied in the spec by the "
     "language's own rounding rule."),
    ("RegNet",
     'Radosavovic, Kosaraju, Girshick, He & Dollar (2020), "Designing Network Design '
     'Spaces", *CVPR*.',
     "Instead of one network, a rule for good ones: block widths grow linearly "
     "with depth (w0 + wa * j) and are then quantized to a few stage widths by powers "
     "of wm. One block file computes all 15 torchvision models from these design-space "
     "numbers with `log`, `pow` and `round`; the Y models add squeeze-and-excitation."),
    ("ConvNeXt",
     'Liu, Mao, Wu, Feichtenhofer, Darrell & Xie (2022), "A ConvNet for the 2020s", '
     '*CVPR*.',
     "A ResNet modernised step by step towards the Swin transformer's design: a 4x4 "
     "patchify stem, stage ratios 3:3:9:3, 7x7 depthwise convs, an inverted bottleneck "
     "with GELU, layer normalization and a learnable per-channel layer scale. It "
     "matches transformers of its size while remaining a plain CNN."),
    ("U-Net",
     'Ronneberger, Fischer & Brox (2015), "U-Net: Convolutional Networks for '
     'Biomedical Image Segmentation", *MICCAI*.',
     "A segmentation network: a contracting path of convs and poolings, then an "
     "expanding path of up-convolutions, each joined with the encoder map of the same "
     "scale (cropped to size in the paper). These long skips are written by naming "
     "the earlier tensor: `concat { enc4, crop 56; identity }`."),
]


@dataclass
class Entry:
    path: Path
    family: str
    anchor: str | None
    name: str = ""
    params: int = 0
    all_params: int = 0
    macs: int = 0
    activation_bytes: int = 0
    rf: tuple[int, int] = (0, 0)
    depth: int = 0
    input_shape: tuple[int, ...] = ()
    error: str | None = None


def family_of(name: str) -> tuple[str, str | None]:
    for pattern, family, anchor in FAMILIES:
        if re.match(pattern, name):
            return family, anchor
    return re.sub(r"[_\d]+$", "", name) or name, None


def spec_paths() -> list[Path]:
    """Every network spec: specs/*.cnn (specs/blocks/ holds block libraries)."""
    return sorted(SPECS.glob("*.cnn"))


def read(path: Path) -> Entry:
    try:
        spec = cnnspec.load(path)
    except cnnspec.SpecError as problem:
        family, anchor = family_of(path.stem)
        return Entry(path, family, anchor, name=path.stem, error=problem.code)
    family, anchor = family_of(spec.name if spec.name in path.stem else path.stem)
    return Entry(path, family, anchor, name=spec.name, params=spec.inference_params,
                 all_params=spec.params, macs=spec.macs,
                 activation_bytes=spec.activation_bytes,
                 rf=spec.table.local_receptive_field(), depth=weighted_depth(spec),
                 input_shape=spec.input_shape)


def sort_key(entry: Entry):
    rank = ORDER.index(entry.family) if entry.family in ORDER else len(ORDER)
    return (rank, entry.family, entry.error is not None, entry.params, entry.macs,
            entry.path.name)


def rf_text(rf: tuple[int, int]) -> str:
    return f"{rf[0]:,}" if rf[0] == rf[1] else f"{rf[0]:,}x{rf[1]:,}"


def table(entries: list[Entry]) -> list[str]:
    lines = ["| Spec | Family | Params | MACs | Activations | RF | Depth | Input |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    notes = []
    for e in entries:
        link = f"[{e.path.stem}](../specs/{e.path.name})"
        if e.name != e.path.stem:
            link += f" (network `{e.name}`)"
        family = f"[{e.family}](#{e.anchor})" if e.anchor else e.family
        if e.error:
            lines.append(f"| {link} | {family} | – | – | – | – | – | "
                         f"refused: {e.error} |")
            continue
        params = f"{e.params:,}"
        if e.all_params != e.params:
            params += "¹"
            notes.append(f"¹ {e.path.stem}: {e.all_params:,} parameters with the "
                         "training-only auxiliary heads, which the table leaves out.")
        rf = rf_text(e.rf)
        lines.append(f"| {link} | {family} | {params} | {human(e.macs)} | "
                     f"{human_bytes(e.activation_bytes)} | {rf} | {e.depth} | "
                     f"{'x'.join(map(str, e.input_shape))} |")
    for note in notes:
        lines += ["", note]
    return lines


def anchor_of(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def stories(entries: list[Entry]) -> list[str]:
    lines = []
    for heading, citation, story in STORIES:
        ours = [e for e in entries if e.anchor == anchor_of(heading)]
        specs = ("Specs: " + ", ".join(f"[{e.path.stem}](../specs/{e.path.name})"
                                       for e in ours) + "."
                 if ours else "No spec in the library yet.")
        lines += [f"### {heading}", "", citation, "", story, "", specs, ""]
    return lines


def render() -> str:
    """The whole text of docs/architectures.md, generated from specs/ and STORIES."""
    entries = sorted((read(p) for p in spec_paths()), key=sort_key)
    lines = [
        "<!-- generated by docs/make_architectures.py; do not edit. "
        "Run `.venv/bin/python docs/make_architectures.py` after changing a spec. -->",
        "",
        "# Architectures",
        "",
        "*Generated by `docs/make_architectures.py`; do not edit. The table is read "
        "from the specs; the stories are kept in the script.*",
        "",
        f"Every network in `specs/` ({len(entries)} specs), by family in order of "
        "publication, then by size. Costs are per image in eval mode, as "
        "`cnnspec compare` reports them (see [costs.md](costs.md)):",
        "",
        "- **Params**: parameters used at inference (training-only heads left out).",
        "- **MACs**: multiply-accumulates of one forward pass.",
        "- **Activations**: bytes of every layer output of one forward pass (float32).",
        "- **RF**: receptive field of the features before the network looks at the "
        "whole input (its global pool or flatten), in input pixels (padding included): "
        "the widest any value sees while it still depends on a region.",
        "- **Depth**: conv and linear layers on the longest input-to-output path "
        "(`cnnspec.analyses.compare.weighted_depth`), the way papers count depth.",
        "- **Input**: channels x height x width.",
        "",
    ]
    lines += table(entries)
    lines += ["", "## What each architecture introduced", ""]
    lines += stories(entries)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    return write_or_check(__file__, __doc__.splitlines()[0], OUTPUT, render)


if __name__ == "__main__":
    sys.exit(main())
