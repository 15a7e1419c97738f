"""paramdoctor: train with best practice, record every curve, diagnose the run.

Importing the package is cheap: nothing here imports torch or mlflow, so the
commands that only read runs start fast. Import the heavy parts explicitly
(``paramdoctor.trainer``, ``paramdoctor.hooks``) where they are needed.
"""

from paramdoctor.errors import ConfigError, InputError, ParamDoctorError

__version__ = "0.1.0"

__all__ = ["ConfigError", "InputError", "ParamDoctorError", "__version__"]
