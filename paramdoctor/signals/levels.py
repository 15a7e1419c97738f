"""Signals that compare loss and accuracy levels with what chance would give.

For a C-class classifier, a fresh head predicts roughly uniformly: its
cross-entropy is ln(C) and its accuracy 1/C. Those two numbers anchor
"barely moved from the start", "the start was wrong" and "validation is at
chance".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from paramdoctor.signals.noise import finite_xy, median, smooth


def chance_loss(num_classes: int) -> float:
    """Cross-entropy of a uniform prediction over ``num_classes`` classes: ln(C)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    return math.log(num_classes)


@dataclass(frozen=True)
class InitialLoss:
    """The first loss against ln(num_classes): ``ratio`` far from 1 means a wrong start
    (a head initialised with large weights, wrong labels or loss)."""

    initial: float
    expected: float
    ratio: float


def initial_loss(values, num_classes: int, *, first: int = 5) -> InitialLoss | None:
    """Median of the first ``first`` finite values against ln(C); None without finite values."""
    v = np.asarray(values, dtype=float).reshape(-1)
    v = v[np.isfinite(v)][:first]
    if v.size == 0:
        return None
    initial = float(median(v))
    expected = chance_loss(num_classes)
    return InitialLoss(initial=initial, expected=expected, ratio=initial / expected)


@dataclass(frozen=True)
class Progress:
    """How far training loss moved from where it started.

    ``start`` is the reference start (the first step losses when known, else
    the first epoch), ``last`` the smoothed final train/loss, ``drop`` the
    relative fall from start to last, ``best_drop`` the relative fall from
    start to the lowest smoothed point (a loss that fell and then blew up has
    a large ``best_drop``), ``loss_vs_chance`` last / ln(C) (None without a
    chance level: a regression or detection loss has none), ``loss_level``
    that ratio when known and last / start otherwise, ``level_text`` says
    which in words, ``last_acc`` the smoothed final train/acc.
    """

    start: float
    last: float
    drop: float
    best_drop: float
    loss_vs_chance: float | None
    loss_level: float
    level_text: str
    last_acc: float | None


def progress(
    x,
    train_loss,
    *,
    start: float | None = None,
    num_classes: int | None = None,
    train_acc=None,
    smoother: Callable[[np.ndarray], np.ndarray] = smooth,
) -> Progress | None:
    """Progress of training loss; None with fewer than 3 finite points.

    ``smoother`` is :func:`~paramdoctor.signals.noise.smooth` or a memo of it
    (the engine smooths each curve of a run once per diagnosis).
    """
    _, v = finite_xy(x, train_loss)
    if v.size < 3:
        return None
    smoothed = smoother(v)
    last = float(smoothed[-1])
    ref = float(start) if start is not None and np.isfinite(start) else float(v[0])
    drop = (ref - last) / (abs(ref) or 1.0)
    best_drop = (ref - float(np.min(smoothed))) / (abs(ref) or 1.0)
    vs_chance = last / chance_loss(num_classes) if num_classes and num_classes >= 2 else None
    if vs_chance is not None:
        level, text = vs_chance, f"{vs_chance:.2f}x the chance-level loss ln({num_classes}) = {chance_loss(num_classes):.3g}"
    else:
        level = last / (abs(ref) or 1.0)
        text = f"{level:.2f}x its starting level (no chance level: the number of classes is unknown)"
    last_acc = None
    if train_acc is not None:
        _, a = finite_xy(np.arange(np.asarray(train_acc).size), train_acc)
        if a.size:
            last_acc = float(smoother(a)[-1]) if a.size >= 5 else float(a[-1])
    return Progress(
        start=ref,
        last=last,
        drop=float(drop),
        best_drop=float(best_drop),
        loss_vs_chance=vs_chance,
        loss_level=float(level),
        level_text=text,
        last_acc=last_acc,
    )


@dataclass(frozen=True)
class ChanceLevel:
    """A classifier's chance level: ``num_classes`` K, its loss ln(K) and accuracy 1/K, and how K was found."""

    num_classes: int
    loss: float
    acc: float
    how: str


BINARY_BAND = (0.62, 0.76)  # a loss sitting here throughout is a binary classifier at (or near) ln 2


def _binary_prior(acc: np.ndarray, loss: np.ndarray) -> tuple[float, float] | None:
    """(majority share, its entropy) for a binary classifier stuck at its label prior, else None.

    A model that always predicts the class prior p of an imbalanced binary
    task scores accuracy max(p, 1-p) with a cross-entropy of H(p). Flat
    accuracy (range at most 0.15) above 55%, and a loss within 15% of H at 80%
    of the points, is that model.
    """
    a = float(median(acc))
    if not 0.55 < a <= 0.95 or float(np.ptp(acc)) > 0.15:
        return None
    entropy = -(a * math.log(a) + (1 - a) * math.log(1 - a))
    near = np.abs(loss - entropy) <= 0.15 * entropy
    return (a, entropy) if float(np.mean(near)) >= 0.8 else None


def infer_chance(
    *,
    num_classes: int | None = None,
    pairs: tuple = (),
    first_loss: float | None = None,
    flat_loss=None,
    has_accuracy: bool = False,
) -> ChanceLevel | None:
    """The chance level of a run, known or inferred from its curves; None when it has none to infer.

    In order: a known ``num_classes``; a binary classifier stuck at its label
    prior (flat accuracy p above 55% with a loss at the entropy of p); an
    (accuracy, loss) pair of curves stuck together at chance (accuracy ~ 1/K and loss ~ ln K for the same K,
    K = round(1 / median accuracy); or, with many classes, K = round(exp(median
    loss)) and an accuracy of at most 1.5/K); a loss that sits in the band around ln 2
    all the way (``flat_loss``, a binary classifier that never left chance);
    the first loss of a run with an accuracy curve (a fresh classification
    head starts at ln K: K = round(exp(first loss)), K <= 20, within 3%).
    ``pairs`` holds (name, accuracy values as fractions, loss values).
    """
    if num_classes is not None and num_classes >= 2:
        return ChanceLevel(num_classes, chance_loss(num_classes), 1.0 / num_classes, "known")
    for name, acc, loss in pairs:
        a = np.asarray(acc, dtype=float)
        l_ = np.asarray(loss, dtype=float)
        a, l_ = a[np.isfinite(a)], l_[np.isfinite(l_)]
        if a.size < 3 or l_.size < 3:
            continue
        m_acc, m_loss = float(median(a)), float(median(l_))
        prior = _binary_prior(a, l_)
        if prior is not None:
            return ChanceLevel(2, prior[1], prior[0], f"{name} accuracy {prior[0]:.0%} with its loss at that prior's entropy")
        if not 0.0 <= m_acc <= 0.55:
            continue
        if m_acc > 0:
            k = int(round(1.0 / m_acc))
            if k >= 2 and abs(m_loss - math.log(k)) <= 0.15 * math.log(k):
                return ChanceLevel(k, math.log(k), 1.0 / k, f"{name} accuracy ~1/{k} with its loss ~ln {k}")
        # no better than chance with many classes: the loss says K, the accuracy must agree (at most 1.5/K)
        if m_loss > math.log(2) and m_loss < math.log(1e5):
            k = int(round(math.exp(m_loss)))
            if k >= 3 and m_acc <= 1.5 / k:
                return ChanceLevel(k, math.log(k), 1.0 / k, f"{name} loss ~ln {k} with accuracy {m_acc:.2g} (~1/{k})")
    if flat_loss is not None:
        v = np.asarray(flat_loss, dtype=float)
        v = v[np.isfinite(v)]
        lo, hi = BINARY_BAND
        if v.size >= 5 and float(np.mean((v >= lo) & (v <= hi))) >= 0.9:
            return ChanceLevel(2, math.log(2), 0.5, "the loss sits at ln 2 throughout")
    if first_loss is not None and has_accuracy and math.isfinite(first_loss) and 0 < first_loss < math.log(21):
        k = int(round(math.exp(first_loss)))
        if 2 <= k <= 20 and abs(first_loss - math.log(k)) <= 0.03 * math.log(k):
            return ChanceLevel(k, math.log(k), 1.0 / k, f"the first loss {first_loss:.3g} ~ ln {k}")
    return None


@dataclass(frozen=True)
class NearChance:
    """Validation that behaves like an untrained model while training has learned.

    ``val_loss_best_vs_chance`` is the lowest (smoothed) val/loss over ln(C): a
    model whose validation predictions never beat a uniform guess stays near
    1.0. ``train_loss_vs_chance`` is the final train/loss (median of the last
    three) over ln(C). ``val_acc``/``val_over_chance`` (median of the last three
    val/acc against 1/C) are None without an accuracy curve. ``held`` counts the
    trailing points whose val/loss is at least ``min_val_loss_vs_chance``
    times ln(C), ``onset`` is the first of them.
    """

    val_loss: float
    val_loss_best_vs_chance: float
    val_acc: float | None
    chance: float
    val_over_chance: float | None
    train_loss: float
    train_loss_vs_chance: float
    held: int
    onset: float | None


def near_chance(
    x,
    val_loss,
    train_loss,
    num_classes: int,
    *,
    val_acc=None,
    min_val_loss_vs_chance: float = 0.8,
    smoother: Callable[[np.ndarray], np.ndarray] = smooth,
) -> NearChance | None:
    """Compare validation with chance; None with fewer than 2 finite points of val/loss or train/loss."""
    xv, vl = finite_xy(x, val_loss)
    _, tl = finite_xy(np.arange(np.asarray(train_loss).size), train_loss)
    if vl.size < 2 or tl.size < 2:
        return None
    ln_c = chance_loss(num_classes)
    chance = 1.0 / num_classes
    below = np.flatnonzero(~(vl[::-1] >= min_val_loss_vs_chance * ln_c))
    held = int(below[0]) if below.size else int(vl.size)  # trailing points at or above the chance line
    acc = None
    if val_acc is not None:
        _, va = finite_xy(np.arange(np.asarray(val_acc).size), val_acc)
        acc = float(median(va[-3:])) if va.size else None
    train = float(median(tl[-3:]))
    return NearChance(
        val_loss=float(median(vl[-3:])),
        val_loss_best_vs_chance=float(np.min(smoother(vl))) / ln_c,
        val_acc=acc,
        chance=chance,
        val_over_chance=None if acc is None else acc / chance,
        train_loss=train,
        train_loss_vs_chance=train / ln_c,
        held=held,
        onset=float(xv[-held]) if held else None,
    )
