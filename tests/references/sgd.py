"""Stochastic gradient descent, with heavy-ball or Nesterov momentum.

``ref_sgd`` takes the same keyword arguments as ``gradtx.sgd`` (the accumulator dtype is
accepted and ignored)."""

from references import Chain
from references.momentum import Trace
from references.scaling import ScaleByLearningRate


def ref_sgd(learning_rate=1e-3, momentum=None, nesterov=False, accumulator_dtype=None):
    return Chain(Trace(momentum, nesterov) if momentum else None, ScaleByLearningRate(learning_rate))
