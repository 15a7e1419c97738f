"""Reports: the one place a diagnosis is rendered (terminal, Markdown, HTML, curves PNG, JSON).

The ``diagnose --json`` shape
=============================

``paramdoctor diagnose RUN --json`` prints exactly one JSON object on stdout,
``Diagnosis.to_dict()`` (``paramdoctor/diagnosis.py``), and the same object is
stored as the ``paramdoctor/diagnosis.json`` artifact of the run. JSON is
strict: a non-finite number (a NaN loss, say) is written as the string
``"nan"``, ``"inf"`` or ``"-inf"``, as in the run export format. Fields:

``schema_version`` (int)
    ``1``. Raised only when a field changes meaning or disappears; new fields
    may be added without raising it.
``run_id`` (string or null)
    The MLflow run id; null for runs read from other tools' files.
``run_name`` (string or null)
    The MLflow run name (or the file's name for other tools' logs).
``status`` (string)
    ``"healthy"`` (no findings, exit code 0), ``"findings"`` (exit code 1) or
    ``"no_validation"`` (no finding, but no validation curve could be read, so
    the run is not called healthy: exit code 3) or ``"interrupted"`` (a
    RUNNING run whose trainer stopped its heartbeat: it died, and half a run
    gets no verdict: exit code 4, no findings). Added in schema 1: the
    ``no_validation`` and ``interrupted`` values.
``interrupted`` (string or null)
    With ``interrupted``: one sentence saying how long the heartbeat has been
    silent and the command that resumes the run. Null otherwise.
``missing`` (string or null)
    With ``no_validation`` (and also beside findings): one sentence saying what
    could not be read, e.g. "no validation curve (val/loss, val/acc or another
    val/ metric) was logged, only step/loss, train/loss". Null when a
    validation curve was read.
``eval_sets`` (array of strings)
    The evaluation sets judged one by one when the run logged several
    (``eval_<set>_loss``, ``eval/<set>/loss``, ``val_loss/dataloader_idx_N``);
    empty for a run with one validation set.
``source`` (string)
    Which tool produced the curves: ``"paramdoctor"``, or e.g. ``"hf_trainer"``.
``x_unit`` (string)
    ``"epoch"`` or ``"step"``: the unit of every onset and x position below.
``summary`` (object)
    Facts about the run the engine measured, by name, values numbers, strings
    or null: for instance ``best_epoch``, ``best_value``, ``monitor``,
    ``epochs_run``, ``max_epochs``, ``run_status``.
``findings`` (array of objects), most useful first as the engine ordered them:
    ``code`` (string, stable rule code such as ``"PD201"``), ``slug`` (string,
    names the symptom), ``category`` (string, one of
    ``paramdoctor.diagnosis.CATEGORIES``: ``diverged``, ``unstable``,
    ``lr_too_high``, ``lr_too_low``, ``overfitting``, ``underfitting``,
    ``undertrained``, ``overtrained``, ``gradients``, ``forgetting``,
    ``eval_mismatch``), ``severity`` (string, one of ``critical``, ``error``,
    ``warning``, ``info``), ``title`` (string), ``evidence`` (object:
    ``message`` the sentence with the measured numbers, ``values`` an object of
    the quoted numbers by name (number, string or null), ``onset`` the epoch or
    step where the symptom began (number or null), ``x_unit``), ``why``
    (string, why it matters), ``fix`` (string, what to change), ``eval_set``
    (string or null: the evaluation set the finding is about when the run has
    several and the finding differs between them; ``"validation"`` names the
    plain set).
``skipped`` (array of objects)
    Rules that could not judge this run: ``code``, ``slug``, ``reason``
    (e.g. ``"needs val/loss"``).
``prescription`` (object)
    ``patch`` (object: dotted config key -> new value), ``changes`` (array of
    ``{key, old, new, reason, rule, factor, note}``, in the order they apply:
    ``factor`` is new / old for a numeric change, the factor actually applied,
    else null; ``note`` is empty unless a clamp made that factor differ from
    the one the rule states, e.g. "x30 applied (x100 capped at 0.03)"; both
    added in schema 1), ``conflicts``
    (array of strings: which change won when rules disagreed, and why),
    ``next_config`` (object: the full nested config to train next; empty when
    the run's config is unknown), ``tool`` (null for runs paramdoctor trained;
    for runs from another tool an object ``{name, changes}``: ``name`` the
    tool, e.g. ``"hf_trainer"``, ``"llamafactory"``, ``"lightning"``,
    ``"keras"``, ``"ultralytics"``, ``"csv"``, and ``changes`` the same
    changes in that tool's vocabulary, an array of ``{key, old, new, reason,
    note, source_key, factor}``: ``key`` the tool's name for the setting (the
    paramdoctor key when the tool has none, ``note`` then says what to do),
    ``old`` the run's own value when its log gave it (else null), ``new`` the
    value to set (null when it can only be said in words or as a factor),
    ``reason`` as above, ``note`` (string, may be empty), ``source_key`` the
    paramdoctor key it translates, ``factor`` (number or null) the relative
    change, e.g. ``0.3`` for "0.3x your learning rate"). Added in schema 1.

With ``--experiment NAME`` and no RUN, ``--json`` prints one object
``{"schema_version": 1, "experiment": NAME, "status": "healthy"|"findings"|"no_validation"|"interrupted",
"runs": [<one object as above per run, newest first>]}``.
"""

from paramdoctor.report.common import diagnosis_json, jsonable, ordered_findings, verdict
from paramdoctor.report.html import diagnosis_html
from paramdoctor.report.markdown import diagnosis_markdown
from paramdoctor.report.plot import plot_curves
from paramdoctor.report.terminal import render_diagnosis, render_summary_table
from paramdoctor.report.tool import (
    attach_tool_prescription,
    shows_tool_terms,
    tool_patch_path,
    tool_patch_yaml,
    tool_prescription,
)

__all__ = [
    "attach_tool_prescription",
    "diagnosis_html",
    "diagnosis_json",
    "diagnosis_markdown",
    "jsonable",
    "ordered_findings",
    "plot_curves",
    "render_diagnosis",
    "render_summary_table",
    "shows_tool_terms",
    "tool_patch_path",
    "tool_patch_yaml",
    "tool_prescription",
    "verdict",
]
