"""Connectionist temporal classification: the negative log-likelihood of a label sequence summed
over every frame-by-frame alignment of it, computed by the forward recursion in log space.

The recursion runs over Graves' extended sequence ``blank, y_1, blank, y_2, ..., y_N, blank``: a
state is either "the blank after the first n labels" (even states 2n) or "label n + 1 being emitted"
(odd states 2n + 1). A state of probability 0 holds ``log_epsilon`` instead of ``-inf``, so that
every value and every gradient stays finite.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.core.numerics import compute_dtype
from gradtx.core.validation import concrete_value
from gradtx.losses._inputs import as_float, as_integer, labels_in_range, same_shape


def _inputs(who, logits, logit_paddings, labels, label_paddings, blank_id, log_epsilon):
    logits = as_float(who, "logits", logits)
    if logits.ndim != 3 or logits.shape[1] == 0 or logits.shape[2] == 0:
        raise ValueError(
            f"{who}: logits must have shape (batch, frames, classes) with frames and classes >= 1, got {logits.shape}"
        )
    batch, frames, classes = logits.shape
    logit_paddings = as_float(who, "logit_paddings", logit_paddings)
    if logit_paddings.shape != (batch, frames):
        raise ValueError(
            f"{who}: logit_paddings has shape {logit_paddings.shape}, logits has shape {logits.shape}; "
            f"it must be (batch, frames) = {(batch, frames)}"
        )
    labels = as_integer(who, "labels", labels)
    if labels.ndim != 2 or labels.shape[0] != batch:
        raise ValueError(
            f"{who}: labels must have shape (batch, max_label_length) with batch {batch}, got {labels.shape}"
        )
    label_paddings = as_float(who, "label_paddings", label_paddings)
    same_shape(who, "label_paddings", label_paddings, "labels", labels)
    if not isinstance(blank_id, (int, np.integer)) or isinstance(blank_id, bool) or not 0 <= blank_id < classes:
        raise ValueError(f"{who}: blank_id must be an integer class index in [0, {classes}), got {blank_id!r}")
    if jnp.ndim(log_epsilon) != 0:
        raise ValueError(f"{who}: log_epsilon must be a number, got an array of shape {jnp.shape(log_epsilon)}")
    eps = concrete_value(log_epsilon)
    if eps is not None and not (np.isfinite(eps) and eps < 0):
        raise ValueError(f"{who}: log_epsilon must be a finite negative number (a stand-in for log 0), got {eps!r}")
    real = label_paddings == 0
    labels_in_range(who, labels, classes, used=real)
    return logits, logit_paddings != 0, labels, real, int(blank_id), log_epsilon


@functools.partial(jax.jit, static_argnames="blank_id")  # compiled once per shape, also when called eagerly
def _forward(logits, padded, labels, real, blank_id, log_epsilon):
    """``(loss, log alpha_blank, log alpha_label)`` of the extended-sequence recursion."""
    dtype = compute_dtype(logits)
    batch, frames, classes = logits.shape
    length = labels.shape[1]
    states = 2 * length + 1
    eps = jnp.asarray(log_epsilon, dtype)
    log_probs = jax.nn.log_softmax(logits.astype(dtype), axis=-1)  # (B, T, K)

    # the extended sequence; a padded label is never emitted, whatever value it holds
    symbols = jnp.where(real, labels, blank_id)
    extended = jnp.full((batch, states), blank_id, labels.dtype).at[:, 1::2].set(symbols)
    emitted = jnp.take_along_axis(log_probs, jnp.clip(extended, 0, classes - 1)[:, None, :], axis=2)  # (B, T, S)
    in_range = (extended >= 0) & (extended < classes)
    emitted = jnp.where(in_range[:, None, :], emitted, jnp.nan)  # a traced label out of range: NaN
    exists = jnp.ones((batch, states), bool).at[:, 1::2].set(real)
    emitted = jnp.where(exists[:, None, :], emitted, eps)

    # a label state may be entered from the label two states back only when the two labels differ
    differs = jnp.concatenate([jnp.zeros((batch, 1), bool), symbols[:, 1:] != symbols[:, :-1]], axis=1)
    skip = jnp.zeros((batch, states), bool).at[:, 1::2].set(differs)
    skip_penalty = jnp.where(skip, 0.0, eps).astype(dtype)

    def shifted(alpha, by):
        return jnp.pad(alpha, ((0, 0), (by, 0)), constant_values=eps)[:, :states]

    def frame(alpha, inputs):
        log_p, pad = inputs  # (B, S), (B,)
        reach = jnp.logaddexp(jnp.logaddexp(alpha, shifted(alpha, 1)), shifted(alpha, 2) + skip_penalty)
        new = jnp.where(pad[:, None], alpha, log_p + reach)  # a padded frame changes nothing
        return new, new

    start = jnp.full((batch, states), eps, dtype).at[:, 0].set(0.0)  # before the first frame: no label yet
    _, alphas = jax.lax.scan(frame, start, (jnp.moveaxis(emitted, 1, 0), padded.T))  # (T, B, S)
    log_blank, log_label = alphas[:, :, 0::2], alphas[:, :, 1::2]
    # after the last frame a sequence may end on its last label as well as on the blank after it
    last = log_blank[-1].at[:, 1:].set(jnp.logaddexp(log_blank[-1, :, 1:], log_label[-1]))
    log_blank = log_blank.at[-1].set(last)
    lengths = jnp.sum(real, axis=1)
    loss = -jnp.take_along_axis(last, lengths[:, None], axis=1)[:, 0]
    out = logits.dtype
    return loss.astype(out), log_blank.astype(out), log_label.astype(out)


def ctc_loss_with_forward_probs(
    logits: Any,
    logit_paddings: Any,
    labels: Any,
    label_paddings: Any,
    *,
    blank_id: int = 0,
    log_epsilon: Any = -1e5,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""The CTC loss of each sequence and the forward probabilities it is computed from.

    With :math:`p_t(k) = \operatorname{softmax}(z_t)_k` and the extended sequence
    :math:`l' = (\phi, y_1, \phi, y_2, \dots, y_N, \phi)` (:math:`\phi` the blank), the forward
    variables of Graves et al., 2006, :doi:`10.1145/1143844.1143891` are

    .. math::
        \alpha_t(s) = p_t(l'_s) \bigl(\alpha_{t-1}(s) + \alpha_{t-1}(s-1)
            + [l'_s \ne \phi,\ l'_s \ne l'_{s-2}]\, \alpha_{t-1}(s-2)\bigr),
        \qquad \ell = -\log\bigl(\alpha_T(2N) + \alpha_T(2N-1)\bigr)

    starting from :math:`\alpha_0 = (1, 0, \dots, 0)`. Padded frames are skipped, and :math:`N`
    is each sequence's own number of unpadded labels. Returned are :math:`\ell` per sequence,
    :math:`\log\alpha_t(2n)` (the blank after :math:`n` labels) and :math:`\log\alpha_t(2n+1)`
    (label :math:`n+1` being emitted); on the last frame the first of these also counts the
    sequences that end on label :math:`n`, so that ``-log_alpha_blank[-1, b, N_b]`` is the loss.
    A padded label is never emitted: the states past a sequence's own labels have probability 0.

    Args:
        logits: ``(batch, frames, classes)`` unnormalised scores, the blank among the classes.
        logit_paddings: ``(batch, frames)``, 1 (or True) at padded frames, 0 at real ones.
        labels: ``(batch, max_label_length)`` integer class indices.
        label_paddings: shaped like ``labels``, 1 at padded labels, 0 at real ones; the padding
            must come after the real labels of each row.
        blank_id: the class index of the blank.
        log_epsilon: the finite negative number that stands for :math:`\log 0`.

    Returns:
        ``(loss, log_alpha_blank, log_alpha_label)`` of shapes ``(batch,)``,
        ``(frames, batch, max_label_length + 1)`` and ``(frames, batch, max_label_length)``.
        A label sequence that no alignment fits gets a loss near ``-log_epsilon``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.ctc import ctc_loss_with_forward_probs
        >>> loss, blank, label = ctc_loss_with_forward_probs(
        ...     jnp.zeros((1, 2, 2)), jnp.zeros((1, 2)), jnp.array([[1]]), jnp.zeros((1, 1)))
        >>> round(float(loss[0]), 4), blank.shape, label.shape  # 3 of the 4 paths give "1"
        (0.2877, (2, 1, 2), (2, 1, 1))
    """
    checked = _inputs(
        "ctc_loss_with_forward_probs", logits, logit_paddings, labels, label_paddings, blank_id, log_epsilon
    )
    return _forward(*checked)


def ctc_loss(
    logits: Any,
    logit_paddings: Any,
    labels: Any,
    label_paddings: Any,
    *,
    blank_id: int = 0,
    log_epsilon: Any = -1e5,
) -> jax.Array:
    r"""The connectionist temporal classification loss of each sequence.

    .. math:: \ell = -\log \sum_{\pi \in \mathcal{B}^{-1}(y)} \prod_t p_t(\pi_t)

    the probability of all alignments :math:`\pi` (one class per unpadded frame) that collapse to
    the labels :math:`y` once repeats are merged and blanks removed (Graves et al., 2006,
    :doi:`10.1145/1143844.1143891`); see :func:`ctc_loss_with_forward_probs` for the recursion.

    Args:
        logits: ``(batch, frames, classes)`` unnormalised scores, the blank among the classes.
        logit_paddings: ``(batch, frames)``, 1 (or True) at padded frames, 0 at real ones.
        labels: ``(batch, max_label_length)`` integer class indices.
        label_paddings: shaped like ``labels``, 1 at padded labels, 0 at real ones; the padding
            must come after the real labels of each row.
        blank_id: the class index of the blank.
        log_epsilon: the finite negative number that stands for :math:`\log 0`.

    Returns:
        The loss of each sequence, shape ``(batch,)``: average it yourself.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses.ctc import ctc_loss
        >>> logits = jnp.zeros((1, 3, 3))  # 3 frames, uniform over blank and two labels
        >>> loss = ctc_loss(logits, jnp.zeros((1, 3)), jnp.array([[1, 2]]), jnp.zeros((1, 2)))
        >>> round(float(jnp.exp(-loss[0]) * 27), 4)  # 5 of the 27 paths give "1 2"
        5.0
    """
    checked = _inputs("ctc_loss", logits, logit_paddings, labels, label_paddings, blank_id, log_epsilon)
    return _forward(*checked)[0]
