"""Command-line usage errors: one ``error: ...`` line on stderr, exit code 2, never a traceback.

typer parses with its bundled copy of click, whose exceptions are not click's;
both kinds must come out the same way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from paramdoctor.cli import app as app_module
from paramdoctor.cli.app import main

USAGE_ERRORS = [
    (["train", "--epochs", "3"], "No such option: --epochs", "paramdoctor train --help"),
    (["bogus"], "No such command 'bogus'", "paramdoctor --help"),
    (["diagnose", "--frobnicate"], "No such option: --frobnicate", "paramdoctor diagnose --help"),
    (["diagnose", "--run-index"], "'--run-index' requires an argument", ""),
    (["diagnose", "some-run", "--run-index", "abc"], "Invalid value for '--run-index'", "paramdoctor diagnose --help"),
    (["import"], "Missing argument 'PATH'", "paramdoctor import --help"),
    (["rules", "test", "--frobnicate"], "No such option: --frobnicate", "--help"),
]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(("argv", "what", "hint"), USAGE_ERRORS, ids=[" ".join(a) for a, _, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_and_exit_2(argv, what, hint, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be trained or written, whatever the parser does
    code = main(argv)
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert code == 2
    assert what in line and hint in line
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_a_usage_error_through_the_installed_command(tmp_path):
    """The real console script: the exception must not escape main() and print a traceback."""
    script = Path(sys.executable).with_name("paramdoctor")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "paramdoctor"]
    for argv, what in ((["train", "--epochs", "3"], "No such option: --epochs"), (["bogus"], "No such command 'bogus'")):
        proc = subprocess.run([*command, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert what in _one_error_line(proc.stderr)
        assert proc.stdout == ""


@pytest.mark.parametrize(
    "raised",
    [
        click.BadParameter("must be positive", param_hint="'--size'"),
        click.UsageError("two runs given"),
        click.exceptions.NoSuchOption("--nope"),
        typer.BadParameter("must be positive", param_hint="'--size'"),
    ],
    ids=["click.BadParameter", "click.UsageError", "click.NoSuchOption", "typer.BadParameter"],
)
def test_errors_raised_by_a_command_from_either_click_are_caught(raised, capsys, monkeypatch):
    """A command (or a callback) may raise click's or typer's own exception classes."""
    boom = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    def register(app: typer.Typer) -> None:
        @app.command()
        def explode() -> None:
            raise raised

        @app.command()
        def other() -> None:  # two commands: the group keeps the command name in argv
            pass

    monkeypatch.setattr(app_module, "app", boom)
    monkeypatch.setattr("paramdoctor.cli.commands.ALL", [register])
    assert main(["explode"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert raised.format_message().rstrip(".") in line


def test_click_abort_is_aborted_not_a_traceback(capsys, monkeypatch):
    boom = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    def register(app: typer.Typer) -> None:
        @app.command()
        def stop() -> None:
            raise click.Abort()

        @app.command()
        def other() -> None:
            pass

    monkeypatch.setattr(app_module, "app", boom)
    monkeypatch.setattr("paramdoctor.cli.commands.ALL", [register])
    assert main(["stop"]) == 130
    assert capsys.readouterr().err.strip() == "aborted"


def test_no_arguments_shows_the_help_with_the_usage_code(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert "Usage: paramdoctor" in captured.err and "Traceback" not in captured.err


def test_unreadable_input_files_are_one_line_and_exit_2(tmp_path, tracking_uri, capsys):
    """Files that are not UTF-8 or repeat a key: the config of train, a --rules file, paramdoctor.yaml."""
    config = tmp_path / "config.yaml"
    config.write_bytes(b"optimizer:\n  lr: 0.1  # \xe9t\xe9\n")
    assert main(["train", "--dry-run", str(config)]) == 2
    assert "config.yaml: config file is not UTF-8 (byte 0xe9 at offset 24, line 2)" in _one_error_line(capsys.readouterr().err)

    config.write_text("optimizer:\n  lr: 0.1\n  lr: 0.2\n")
    assert main(["train", "--dry-run", str(config)]) == 2
    assert "config.yaml: line 3: duplicate key 'lr'" in _one_error_line(capsys.readouterr().err)

    rules = tmp_path / "my_rules"
    rules.mkdir()
    (rules / "PD901.yaml").write_bytes(b"code: PD901\ntitle: caf\xe9\n")
    assert main(["diagnose", "some-run", "--no-log", "--rules", str(rules)]) == 2
    assert "PD901.yaml: rule file is not UTF-8 (byte 0xe9 at offset 22, line 2)" in _one_error_line(capsys.readouterr().err)

    (tmp_path / "paramdoctor.yaml").write_bytes(b"rules:\n  PD301: {min_rise: 0.2}  # \xff\n")
    assert main(["diagnose", "some-run", "--no-log"]) == 2
    assert "paramdoctor.yaml: project file is not UTF-8 (byte 0xff at offset 35" in _one_error_line(capsys.readouterr().err)

    (tmp_path / "paramdoctor.yaml").write_text("rules:\n  PD301: {min_rise: .nan}\n")
    assert main(["diagnose", "some-run", "--no-log"]) == 2
    assert "rules.PD301.min_rise: must be a finite number, got nan" in _one_error_line(capsys.readouterr().err)
    (tmp_path / "paramdoctor.yaml").unlink()

    assert main(["diagnose", "some-run", "--no-log", "--set", "PD301.min_rise=.nan"]) == 2
    assert "--set PD301.min_rise=.nan: min_rise must be a finite number" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["train", "--dry-run", "\n"], "error: \\n: config file not found"),
        (["train", "--dry-run", "x\x00y"], "error: x\\x00y: cannot read config file (the path holds a null byte)"),
        (["train", "--dry-run", "optim\nizer.lr=1"], "error: override optim\\nizer.lr: unknown config key"),
        (["train", "--dry-run", "\udcff.l\tr=1"], "error: override \\udcff.l\\tr: unknown config key"),
    ],
    ids=["newline path", "null byte", "newline in key", "surrogate and tab"],
)
def test_control_characters_in_an_error_are_escaped_on_one_line(argv, shown, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\r" not in err
    assert _one_error_line(err).startswith(shown)


def test_a_long_error_line_is_cut_with_a_marker(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    key = "x" * 5000
    assert main(["train", "--dry-run", f"{key}=1"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("error: override xxxx") and len(line) < 1100
    assert line.endswith("characters in all]")


def test_main_registers_the_commands_once(capsys):
    """In-process callers (the fuzz tests, benchmarks) call main() many times; the app keeps one copy of each command."""
    main(["rules", "--help"])
    count = len(app_module.app.registered_commands)
    for _ in range(3):
        main(["train", "--bogus"])
    capsys.readouterr()
    assert len(app_module.app.registered_commands) == count


def test_a_click_error_from_a_command_is_escaped_and_cut_too(capsys, monkeypatch):
    """A command's own click error may quote raw text: one line, escaped, bounded, like every other error."""
    boom = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    def register(app: typer.Typer) -> None:
        @app.command()
        def explode() -> None:
            raise click.UsageError("bad name 'a\nb'; " + "x" * 3000)

        @app.command()
        def other() -> None:
            pass

    monkeypatch.setattr(app_module, "app", boom)
    monkeypatch.setattr("paramdoctor.cli.commands.ALL", [register])
    assert main(["explode"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("error: bad name 'a\\nb'; xxx") and len(line) < 1100
