"""The backends: a checked spec to something that runs.

`torch_backend` builds a `torch.fx.GraphModule` from the layer table in `layers`;
`codegen` writes the same module out as standalone PyTorch source; `export` writes
that source, TorchScript, `torch.export` programs and ONNX files. None imports the
training backend.
"""
