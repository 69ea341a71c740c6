"""A small valid search spec, and variants of it, for the search tests."""

from __future__ import annotations

import copy

BASE = {"algorithm": "tpe", "max_trials": 4, "parallel_trials": 2,
        "parameters": [{"name": "lr", "type": "double", "min": 0.001, "max": 0.1, "log": True},
                       {"name": "embed_dim", "type": "discrete", "values": [8, 16]}]}


def with_(**changes):
    spec = copy.deepcopy(BASE)
    spec.update(changes)
    return spec
