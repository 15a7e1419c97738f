"""One root error for everything paramdoctor raises on purpose.

Every subclass carries a one-line message that says what is wrong, where, and
how to fix it. The CLI prints that line and exits with ``exit_code``; it never
shows a traceback for these.
"""

from __future__ import annotations


class ParamDoctorError(Exception):
    """Root of all errors paramdoctor raises deliberately."""

    exit_code = 2


class ConfigError(ParamDoctorError):
    """A configuration file, override or value is invalid."""


class InputError(ParamDoctorError):
    """A run, file, dataset or weight source cannot be read or used."""


class RuleError(ParamDoctorError):
    """A rule file is malformed or a rule parameter is invalid."""


class TrainingError(ParamDoctorError):
    """Training could not go on (for example a non-finite loss)."""

    exit_code = 1
