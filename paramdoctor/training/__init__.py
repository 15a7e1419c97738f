"""The built-in trainer: optimizer and schedule builders, early stopping, the fit loop.

``fit(config)`` is the function every higher-level command calls (train, and
later treat/ablate/tune); it knows nothing of the terminal.
"""

from paramdoctor.training.early_stopping import EarlyStopping
from paramdoctor.training.fit import FitListener, FitResult, fit
from paramdoctor.training.resume import resume

__all__ = ["EarlyStopping", "FitListener", "FitResult", "fit", "resume"]
