"""The front end: text to a checked graph.

`syntax` (the syntax tree's types) <- `parse` (Lark, the grammar in grammar/) ->
`elaborate` (blocks, repeats, `constructs`, `arguments`, `expressions` and the
`recipe` expanded into an `ir.Graph`) -> `check` (every shape, parameter count, MAC
count and receptive field, in a `ShapeTable`). `highlight` is the Pygments lexer of
the same language. Nothing here imports torch, networkx or graphviz.
"""
