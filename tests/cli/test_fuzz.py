"""The whole CLI on hostile input keeps its contract: a documented exit code, one error line, no traceback, no stray run.

Each family of input has its own test and strategy (``tests/cli/fuzz_strategies.py``,
which also states the contract): argv for every command, config files (dry
runs, and a few one-epoch trainings), key=value overrides, rule files and
``--set``, run exports and other tools' logs, checkpoints for
``model.weights``, datasets on disk (ImageFolder trees, CIFAR files), and
YAML alias bombs. Every case runs through
``paramdoctor.cli.app.main`` in its own working directory with its own SQLite
store; alias bombs run in a child process with a time and memory limit, so a
loader that follows every alias fails the test instead of hanging the suite.

Each test first runs its family's known hostile inputs
(``fz.explicit_examples``: inputs that once broke the contract), then the
generated ones. Hypothesis runs derandomized without its example database:
the same examples on every machine. An in-process case that hangs is
interrupted after two minutes and fails as a ``Hang``. A broken contract fails with the kind of violation as the
exception class (so Hypothesis reports each kind apart) and the shrunk input
as its repro. ``benchmarks/fuzz_counts.py`` runs the same strategies at larger
budgets and counts violations per family.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.cli import fuzz_strategies as fz

#: family -> exit codes seen (printed by the last test, a record of what the examples reached).
SEEN: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def fuzz(max_examples: int):
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def known(family: str):
    """Run the family's known hostile inputs (``fz.explicit_examples``) before the generated ones."""

    def decorate(test):
        for case in reversed(fz.explicit_examples(family)):
            test = example(case=case)(test)
        return test

    return decorate


class ContractViolation(AssertionError):
    """A run of the CLI broke its contract."""


_KINDS: dict[str, type[ContractViolation]] = {}


def _violation(kind: str) -> type[ContractViolation]:
    if kind not in _KINDS:
        _KINDS[kind] = type(kind, (ContractViolation,), {"__module__": __name__})
    return _KINDS[kind]


def check(outcome: fz.Outcome) -> None:
    """Fail with the first violation's kind as the exception class; the message holds the repro."""
    code = "timeout" if outcome.timed_out else ("raised" if outcome.code is None else outcome.code)
    SEEN[outcome.case.family][code] += 1
    problems = outcome.violations
    if problems:
        raise _violation(fz.violation_kind(problems[0]))(
            "\n".join([
                *problems,
                f"repro: {outcome.case.repro(600)}",
                f"stdout (tail): {outcome.out[-600:]!r}",
                f"stderr (tail): {outcome.err[-1200:]!r}",
            ])
        )


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> fz.StoreTemplates:
    return fz.StoreTemplates(tmp_path_factory.mktemp("fuzz-stores"))


@pytest.fixture
def run(tmp_path, stores, capfd):
    def run_one(case: fz.Case) -> None:
        check(fz.run_case(case, tmp_path, stores, lambda: tuple(capfd.readouterr()), timeout=120))

    return run_one


@fuzz(200)
@known("argv")
@given(case=fz.argv_cases())
def test_argv_of_every_command(run, case):
    run(case)


@fuzz(150)
@known("config")
@given(case=fz.config_dry_run_cases())
def test_config_files_dry_run(run, case):
    run(case)


@fuzz(3)
@known("config-train")
@given(case=fz.config_training_cases())
def test_config_files_train_one_epoch(run, case):
    run(case)


@fuzz(200)
@known("override")
@given(case=fz.override_cases())
def test_overrides_dry_run(run, case):
    run(case)


@fuzz(150)
@known("rules")
@given(case=fz.rules_cases())
def test_rule_files_and_rule_parameters(run, case):
    run(case)


@fuzz(150)
@known("runfile")
@given(case=fz.runfile_cases())
def test_run_exports_and_foreign_logs(run, case):
    run(case)


@fuzz(10)
@known("weights")
@given(case=fz.weights_cases())
def test_checkpoints_as_model_weights(run, case):
    run(case)


@fuzz(15)
@known("data")
@given(case=fz.STRATEGIES["data"])
def test_datasets_read_from_disk(run, case):
    run(case)


@fuzz(5)
@known("alias")
@given(case=fz.alias_cases())
def test_yaml_alias_bombs_in_a_child_process(tmp_path, stores, case):
    check(fz.run_case_in_subprocess(case, tmp_path, stores, timeout=30, memory_mb=2048))


def test_zz_every_family_ran(capsys):
    """The counts of this session (shown with -s or -rP); each family that ran reached at least one exit code."""
    with capsys.disabled():
        for family, codes in sorted(SEEN.items()):
            print(f"\nfuzz {family}: {sum(codes.values())} examples, exit codes {dict(sorted(codes.items(), key=str))}")
    assert all(sum(codes.values()) for codes in SEEN.values())
