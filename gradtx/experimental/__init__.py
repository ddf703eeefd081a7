"""Optax's experimental namespace: transforms whose interface may still change.

:mod:`gradtx.experimental.aggregating` holds the aggregators, which take per-example gradients
and return one update.
"""

from __future__ import annotations

from gradtx.experimental import aggregating

__all__ = ["aggregating"]
