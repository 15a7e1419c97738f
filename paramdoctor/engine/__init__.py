"""The decide stage: rules (data, ``rules/*.yaml``) judge a run record through signals and prescribe the next config.

Typical use::

    from paramdoctor.engine import load_rules, diagnose
    rules = load_rules(extra_dirs=("my_rules",))
    diagnosis = diagnose(record, rules, params={"PD301": {"min_rise": 0.2}})
"""

from paramdoctor.engine.evaluate import Verdict, diagnose, evaluate, evaluate_rule
from paramdoctor.engine.loader import builtin_rules_dir, find_rule, load_rule_file, load_rules, load_rules_dir
from paramdoctor.engine.measure import SIGNALS, Measurement, SignalSpec, Unavailable
from paramdoctor.engine.memo import RecordMemo
from paramdoctor.engine.params import (
    PROJECT_FILE,
    ProjectRules,
    load_project_params,
    merge_params,
    parse_param_overrides,
    resolve_params,
)
from paramdoctor.engine.prescribe import apply_patch, prescribe, starting_config
from paramdoctor.engine.schema import Rule
from paramdoctor.engine.stages import STAGES, stage_name
from paramdoctor.engine.summary import summarize

__all__ = [
    "PROJECT_FILE",
    "SIGNALS",
    "STAGES",
    "Measurement",
    "ProjectRules",
    "RecordMemo",
    "Rule",
    "SignalSpec",
    "Unavailable",
    "Verdict",
    "apply_patch",
    "builtin_rules_dir",
    "diagnose",
    "evaluate",
    "evaluate_rule",
    "find_rule",
    "load_project_params",
    "load_rule_file",
    "load_rules",
    "load_rules_dir",
    "merge_params",
    "parse_param_overrides",
    "prescribe",
    "resolve_params",
    "stage_name",
    "starting_config",
    "summarize",
]
