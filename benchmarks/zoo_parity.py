"""Every torchvision CNN classifier against its spec, at native resolution.

Run:  .venv/bin/python benchmarks/zoo_parity.py [--models regnet_y_128gf,...] [--fvcore]

For each spec in specs/ with a torchvision counterpart (68 models; the vision
transformers ViT, Swin and MaxViT are not CNNs and are left out):
  - parameters: the spec's count against the weights' documented `num_params`;
  - MACs: the spec's count against the weights' documented `_ops` (GFLOPS that count
    multiply-adds) at the spec's input size, as a ratio;
  - eval outputs: torchvision's model (weights=None) with every batchnorm given
    random statistics and affine parameters (and every layer norm and ConvNeXt layer
    scale random values), its state dict loaded into the compiled
    spec with strict=True, one image at the spec's (native) input size, max abs
    difference of the logits against 1e-5 times the logits' scale;
  - with --fvcore: fvcore's MACs for every conv and linear module, layer by layer.
The test suite checks the same for the models under 10 GMACs at native size and the
rest on smaller inputs or on the meta device; this script is the native-size proof
for all of them. Results go to benchmarks/results/zoo_parity.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
import torchvision.models as tvm  # noqa: E402
from parity_helpers import randomise_batchnorm, randomise_layer_norms_and_scales  # noqa: E402,E501

import cnnspec  # noqa: E402

SPECS = ROOT / "specs"
TRANSFORMERS = ("vit_", "swin_", "maxvit_")
# fvcore traces eval mode, where the auxiliary heads do not run: it compares the
# models built without them.
NO_AUX = {"googlenet": {"aux_logits": False, "init_weights": False},
          "inception_v3": {"aux_logits": False, "init_weights": False}}


def counterparts() -> dict[str, str]:
    names = set(tvm.list_models(module=tvm))
    return {p.stem: p.stem.removesuffix("_torchvision") for p in sorted(SPECS.glob("*.cnn"))
            if p.stem.removesuffix("_torchvision") in names and p.stem != "alexnet"}


def documented(model: str, crop: int) -> tuple[int, float]:
    weights = [w for w in tvm.get_model_weights(model)
               if w.transforms().crop_size[0] == crop]
    return weights[0].meta["num_params"], weights[0].meta["_ops"]


def fvcore_layers(reference, shape) -> dict[str, int]:
    from fvcore.nn import FlopCountAnalysis
    counter = FlopCountAnalysis(reference, torch.randn((1,) + shape))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_module = counter.by_module()
    return {name: by_module[name] for name, module in reference.named_modules()
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))}


def compare(stem: str, model: str, with_fvcore: bool) -> dict:
    spec = cnnspec.load(SPECS / f"{stem}.cnn")
    crop = spec.input_shape[1]
    params, gflops = documented(model, crop)
    torch.manual_seed(0)
    start = time.perf_counter()
    extra = {"init_weights": True} if model == "googlenet" else {}
    reference = getattr(tvm, model)(weights=None, **extra).eval()
    randomise_batchnorm(reference)
    # ConvNeXt's layer scales start at 1e-6, which makes each block nearly the
    # identity and would hide a wrong one.
    randomise_layer_norms_and_scales(reference)
    with torch.device("meta"):
        ours = cnnspec.build(spec)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    ours.eval()
    x = torch.randn((1,) + spec.input_shape)
    with torch.no_grad():
        expected, found = reference(x), ours(x)
    scale = max(1.0, expected.abs().max().item())
    difference = (found - expected).abs().max().item()
    # torchvision documents GoogLeNet without its auxiliary heads, Inception-v3 with.
    counted = params if params in (spec.params, spec.inference_params) else spec.params
    row = {"spec": stem, "torchvision": model, "input": list(spec.input_shape),
           "params": counted, "documented_params": params,
           "macs": spec.macs, "documented_gflops": gflops,
           "macs_ratio": spec.macs / 1e9 / gflops,
           # `_ops` has three decimals: 0.04 for shufflenet_v2_x0_5 is 0.0395-0.0405.
           "macs_agree": abs(spec.macs / 1e9 - gflops) <= max(0.01 * gflops, 0.0005),
           "max_abs_difference": difference, "logit_scale": scale,
           "outputs_equal": difference <= 1e-5 * scale}
    if with_fvcore:
        if model in NO_AUX:
            reference = getattr(tvm, model)(weights=None, **NO_AUX[model]).eval()
        expected_layers = fvcore_layers(reference, spec.input_shape)
        row["fvcore_layers_equal"] = all(spec.facts(name).macs == macs
                                         for name, macs in expected_layers.items())
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated spec names (default: all)")
    parser.add_argument("--fvcore", action="store_true", help="also compare with fvcore")
    args = parser.parse_args()
    torch.set_num_threads(2)
    pairs = counterparts()
    if args.models:
        pairs = {k: v for k, v in pairs.items() if k in args.models.split(",")}
    rows = []
    for stem, model in pairs.items():
        row = compare(stem, model, args.fvcore)
        rows.append(row)
        print(f"{stem:22} params {'=' if row['params'] == row['documented_params'] else '!='}"
              f" MACs x{row['macs_ratio']:.4f}  max|diff| {row['max_abs_difference']:.2e}"
              f" {'ok' if row['outputs_equal'] else 'DIFFERENT'}"
              + (f"  fvcore {'ok' if row['fvcore_layers_equal'] else 'DIFFERENT'}"
                 if args.fvcore else "") + f"  ({row['seconds']} s)", flush=True)
    out = ROOT / "benchmarks" / "results" / "zoo_parity.json"
    out.parent.mkdir(exist_ok=True)
    if not args.models:
        out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    bad = [r["spec"] for r in rows if not (r["outputs_equal"]
                                           and r["params"] == r["documented_params"]
                                           and r["macs_agree"]
                                           and r.get("fvcore_layers_equal", True))]
    print(f"{len(rows) - len(bad)} of {len(rows)} models: parameters equal, MACs within "
          f"1% of torchvision's figure (or its rounding), eval outputs equal" + (f"; not: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
