"""Grid points of a double parameter as Katib's grid service makes them: shared by the search spec
(what the local backend runs) and the ported admission check (what Katib would accept)."""

from __future__ import annotations

import numpy as np


def double_grid(low: float, high: float, step: float) -> list[float]:
    """pkg/suggestion/v1beta1/internal/search_space.py, rounding included: `arange(min, max + step,
    step)`, its last point dropped when above max (0..0.3 by 0.1 gives 3 points, 0.30000000000000004
    being above 0.3), so that both backends search the same points."""
    points = np.arange(float(low), float(high) + float(step), float(step))
    if points[-1] > float(high):
        points = points[:-1]
    return [float(x) for x in points]
