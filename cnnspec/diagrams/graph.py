"""networkx backend: shaped IR -> `networkx.DiGraph`, GraphML and node-link JSON.

Takes: a checked `Spec`. Returns: `to_networkx` a DiGraph keyed by layer name (the
input node is `input`), with the checker's side table as node attributes: `op` (the
op kind), `label` (`conv 3x3/2, 64`), `params`, `macs`, `output_shape`,
`receptive_field`, `block_path` (the enclosing block instance paths, outermost
first), `blocks` (their block names) and `training_only`. Each edge carries the
tensor it moves as `shape`. `write_graph` writes `.graphml` (lists as JSON strings,
which GraphML needs) or `.json` (networkx node-link data) and returns the `Path`.
No number is re-derived here.
"""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx

GRAPH_FORMATS = ("graphml", "json")


def to_networkx(spec) -> nx.DiGraph:
    """The layer DAG with each layer's checked facts as node attributes."""
    graph = nx.DiGraph(name=spec.name, input_shape=list(spec.input_shape),
                       output_shape=list(spec.output_shape), params=spec.params,
                       macs=spec.macs,
                       outputs=[spec.graph.nodes[o.node].name for o in spec.graph.outputs])
    nodes = spec.graph.nodes
    for node in nodes:
        graph.add_node(node.name, **_attributes(node, spec.table[node.id]))
    for node in nodes:
        for source in node.inputs:
            graph.add_edge(nodes[source].name, node.name,
                           shape=list(spec.table[source].shape))
    if graph.number_of_nodes() != len(nodes):
        raise ValueError(f"{spec.name}: layer names are not unique")
    return graph


def _attributes(node, facts) -> dict:
    return {"op": node.op.op, "label": node.op.label(), "params": facts.params,
            "macs": facts.macs, "output_shape": list(facts.shape),
            "receptive_field": list(facts.receptive_field),
            "receptive_field_global": facts.whole,
            "block_path": [path for path, _ in node.blocks],
            "blocks": [block for _, block in node.blocks],
            "training_only": node.training_only}


def write_graph(spec, out_path) -> Path:
    """Write the graph as `.graphml` or `.json` (chosen by the extension)."""
    out = Path(out_path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in GRAPH_FORMATS:
        raise ValueError(f"cannot tell the graph format from {str(out_path)!r}: "
                         "name it .graphml or .json")
    graph = to_networkx(spec)
    if fmt == "graphml":
        nx.write_graphml(_flattened(graph), out)
    else:
        try:
            data = nx.node_link_data(graph, edges="edges")
        except TypeError:  # networkx < 3.4 names the key "links" and takes no argument
            data = nx.node_link_data(graph)
        out.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return out


def _flattened(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy whose list attributes are JSON strings (GraphML holds only scalars)."""
    flat = nx.DiGraph()
    flat.graph.update(_scalars(graph.graph))
    for name, attrs in graph.nodes(data=True):
        flat.add_node(name, **_scalars(attrs))
    for tail, head, attrs in graph.edges(data=True):
        flat.add_edge(tail, head, **_scalars(attrs))
    return flat


def _scalars(attrs: dict) -> dict:
    return {key: json.dumps(value) if isinstance(value, (list, tuple)) else value
            for key, value in attrs.items()}
