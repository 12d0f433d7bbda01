"""`cnnspec lsp`: a language server for `.cnn` files (docs/editors.md).

`analysis`, `hover`, `complete` and `outline` are pure functions from a document's
text and path to what an editor shows (diagnostics, hover text, definitions,
completions, the outline); they import neither pygls nor torch. `server` wires them
to the Language Server Protocol with pygls; `client` is the small stdio JSON-RPC
client the tests and the latency benchmark speak to it with.
"""
