"""How hard weight decay pulls the weights towards zero on every optimizer step.

Both ways PyTorch applies weight decay shrink a weight by a fixed fraction of
itself per step, whatever the data says:

- decoupled (AdamW): ``w <- w - lr * wd * w`` before the Adam step, a shrink
  of ``lr * wd`` per step;
- L2 added to the gradient (SGD): ``g <- g + wd * w``; with heavy-ball
  momentum ``m`` the steady-state pull is ``lr * wd / (1 - m)`` per step.

On its own, the decay term is the gradient step of the quadratic
``wd/2 * ||w||^2``: plain gradient descent on it is stable only while
``lr * wd < 2``, heavy-ball momentum only while ``lr * wd < 2 * (1 + m)``
(Polyak); beyond that every step overshoots zero and the weights grow
without bound, diverging whatever the data. Well below that, a pull of a
percent per step halves every weight in under 70 steps: the gradient cannot
hold any learned weight against it. Common recipes sit far lower (SGD lr 0.1,
wd 5e-4, m 0.9: 5e-4 per step; AdamW lr 1e-3, wd 0.05: 5e-5).

Adam with L2 (``torch.optim.Adam(weight_decay=...)``) divides the L2 term by
its running gradient scale per weight, so its pull cannot be read from the
configuration; :func:`decay_strength` returns None for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DecayStrength:
    """The decay term's pull per optimizer step, its half-life, and how far it is from a target pull.

    ``stability_limit`` is the ``lr * wd`` at which the decay step alone
    diverges; ``decay_factor`` is what ``weight_decay`` must be multiplied by
    for the pull to equal ``target`` at the same learning rate.
    """

    optimizer: str
    coupling: str  # "decoupled" or "L2"
    lr: float
    weight_decay: float
    momentum: float
    lr_times_wd: float
    shrink_per_step: float
    half_life_steps: float
    stability_limit: float
    unstable: bool
    target: float
    decay_factor: float
    verdict: str


def decay_strength(optimizer: str, lr: float, weight_decay: float, momentum: float = 0.0, target: float = 5e-4) -> DecayStrength | None:
    """The decay pull of ``optimizer`` ("sgd", "adamw"; None for "adam" and unknown ones) at peak ``lr``."""
    name = optimizer.lower()
    if name == "adamw":
        coupling, momentum, limit = "decoupled", 0.0, 2.0
    elif name == "sgd":
        coupling, limit = "L2", 2.0 * (1.0 + momentum)
    else:
        return None
    if not (lr > 0 and weight_decay >= 0 and 0 <= momentum < 1):
        return None
    lr_wd = lr * weight_decay
    shrink = lr_wd if coupling == "decoupled" else lr_wd / (1.0 - momentum)
    half_life = math.log(2.0) / shrink if 0 < shrink < 1 else (1.0 if shrink >= 1 else math.inf)
    unstable = lr_wd >= limit
    factor = float(f"{target / shrink:.2g}") if shrink > 0 else math.inf  # a factor a person would write
    if unstable:
        verdict = (
            f"lr x weight_decay = {lr_wd:.3g} is past {limit:.3g}, where the decay step alone overshoots zero "
            "and the weights grow every step: it diverges whatever the data"
        )
    elif shrink >= 0.5:
        verdict = "the decay step alone removes half of every weight or more each step: nothing the data teaches survives"
    else:
        verdict = f"every weight halves every {half_life:.0f} steps unless its gradient holds it up: learned weights are pulled back to zero"
    return DecayStrength(
        optimizer=name,
        coupling=coupling,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        lr_times_wd=lr_wd,
        shrink_per_step=shrink,
        half_life_steps=half_life,
        stability_limit=limit,
        unstable=unstable,
        target=target,
        decay_factor=factor,
        verdict=verdict,
    )
