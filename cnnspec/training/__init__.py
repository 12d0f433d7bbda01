"""Training backend: a checked spec's compiled module plus its recipe -> a trained run.

Takes: a `Spec` (or a path) and a data source. Returns: a `TrainResult` with the
trained model, the per-epoch history and the final metrics, and a run directory
(run.json, metrics.jsonl, weights.safetensors, last.ckpt, curves.png).
Nothing on the parse/check path imports this package.
"""
