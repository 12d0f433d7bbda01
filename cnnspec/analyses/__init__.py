"""The analyses: what can be said of a checked spec without building it.

`summary` (the layer table), `memory` (the training-memory planner), `explain` (every
number's formula), `lint` (warnings), `compare` (specs side by side). Each reads the
graph and the checker's table; none imports torch or the training backend.
"""
