"""How long the ``paramdoctor`` command takes to start, and what importing the CLI drags in.

Wall time of fresh subprocesses (median of ``--repeats``):

* ``python -c pass``                the interpreter's own floor, for scale;
* ``paramdoctor --help``            target < 0.3 s;
* ``paramdoctor rules``             target < 0.3 s (skipped when the command is missing);
* ``paramdoctor diagnose RUN``      on a run made here by a 1-epoch ``fit`` into a
                                    temporary SQLite store (skipped when the command
                                    is missing); ``--no-log`` too, to separate reading
                                    and judging from writing the reports back.

Then, in a fresh interpreter, which heavy modules (torch, mlflow, matplotlib,
pandas, sklearn, scipy) are in ``sys.modules`` after ``import paramdoctor.cli.app``
and after the commands are registered (what ``--help`` pays for).
``--importtime`` adds the slowest imports of ``--help`` from ``python -X importtime``.

    .venv/bin/python benchmarks/startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO_ROOT, machine_line, median, reproduce_line  # noqa: E402

TARGET_S = 0.3
HEAVY = ("torch", "mlflow", "matplotlib", "pandas", "sklearn", "scipy", "numpy", "pydantic", "rich")

_IMPORT_CHECK = """
import json, sys
import paramdoctor.cli.app as app
after_import = {m: m in sys.modules for m in HEAVY}
app._register()
after_register = {m: m in sys.modules for m in HEAVY}
print(json.dumps({"import": after_import, "register": after_register}))
"""


def paramdoctor_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m paramdoctor``."""
    script = Path(sys.executable).with_name("paramdoctor")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "paramdoctor"]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def time_command(
    argv: list[str], repeats: int, env: dict[str, str], ok_codes=(0,), cwd: Path = REPO_ROOT
) -> tuple[list[float], str | None]:
    """Wall times of ``repeats`` runs after one untimed warm-up (file cache); an error line when it fails."""
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if done.returncode not in ok_codes:
            tail = (done.stderr or done.stdout).strip().splitlines()
            return times, f"exit {done.returncode}: {tail[-1] if tail else '(no output)'}"
        if i:
            times.append(elapsed)
    return times, None


def has_command(name: str, env: dict[str, str]) -> bool:
    argv = paramdoctor_command() + [name, "--help"]
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    return done.returncode == 0


def make_run(store: Path) -> str:
    """A 1-epoch fit on digits into ``store``; its run id."""
    code = (
        "import torch; torch.set_num_threads(1)  # steady on a shared CPU\n"
        "from paramdoctor.config import load_config\n"
        "from paramdoctor.training import fit\n"
        "r = fit(load_config(None, ['trainer.max_epochs=2', 'experiment.name=bench-startup']))\n"
        "print(r.run_id)\n"
    )
    env = _env({"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"})
    done = subprocess.run([sys.executable, "-c", code], cwd=store, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"could not make a run to diagnose: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip().splitlines()[-1]


def heavy_imports(env: dict[str, str]) -> dict[str, dict[str, bool]]:
    code = f"HEAVY = {HEAVY!r}\n" + _IMPORT_CHECK
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"importing paramdoctor.cli.app failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def slowest_imports(env: dict[str, str], top: int) -> list[tuple[int, str]]:
    """``(cumulative microseconds, module)`` of the slowest top-level imports of ``--help``."""
    code = "from paramdoctor.cli.app import main; main(['--help'])"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            cumulative = int(parts[1])
        except ValueError:
            continue  # the header line
        name = parts[2]
        depth = (len(name) - len(name.lstrip(" "))) // 2
        if depth <= 1:  # top-level imports and their direct children
            rows.append((cumulative, name.strip()))
    return sorted(rows, reverse=True)[:top]


def _report(label: str, times: list[float], error: str | None, target: float | None) -> None:
    if error:
        print(f"  {label:<34} failed ({error})")
        return
    verdict = ""
    if target is not None:
        verdict = f"   {'meets' if median(times) < target else 'MISSES'} the < {target} s target"
    print(f"  {label:<34} {median(times):6.3f} s   runs: {', '.join(f'{t:.3f}' for t in times)}{verdict}")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command, median reported (default 5)")
    parser.add_argument("--skip-diagnose", action="store_true", help="do not train a 1-epoch run nor time diagnose")
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports of --help")
    parser.add_argument("--top", type=int, default=12, help="how many imports --importtime lists (default 12)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    print(machine_line("cpu"))
    command = paramdoctor_command()
    env = _env()
    print(f"command: {' '.join(command)}; median of {args.repeats} fresh processes after 1 warm-up")

    _report("python -c pass", *time_command([sys.executable, "-c", "pass"], args.repeats, env), None)
    _report("paramdoctor --help", *time_command(command + ["--help"], args.repeats, env), TARGET_S)
    if has_command("rules", env):
        _report("paramdoctor rules", *time_command(command + ["rules"], args.repeats, env), TARGET_S)
    else:
        print("  paramdoctor rules                  skipped: no `rules` command yet")

    if args.skip_diagnose:
        print("  paramdoctor diagnose RUN           skipped (--skip-diagnose)")
    elif not has_command("diagnose", env):
        print("  paramdoctor diagnose RUN           skipped: no `diagnose` command yet")
    else:
        store = Path(tempfile.mkdtemp(prefix="paramdoctor-startup-"))
        try:
            run_id = make_run(store)
            run_env = _env({"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"})
            # exit 1 means "findings", 3 "no readable validation curve": normal outcomes for a 2-epoch run
            diagnose = command + ["diagnose", run_id]
            _report("paramdoctor diagnose RUN", *time_command(diagnose, args.repeats, run_env, (0, 1, 3), store), None)
            _report(
                "paramdoctor diagnose RUN --no-log",
                *time_command(diagnose + ["--no-log"], args.repeats, run_env, (0, 1, 3), store),
                None,
            )
        finally:
            shutil.rmtree(store, ignore_errors=True)

    modules = heavy_imports(env)
    for stage, label in (("import", "import paramdoctor.cli.app"), ("register", "+ commands registered (--help)")):
        loaded = [m for m, present in modules[stage].items() if present]
        print(f"  {label:<34} loads: {', '.join(loaded) if loaded else 'none of ' + ', '.join(HEAVY)}")
    heavy_hit = [m for m in ("torch", "mlflow") if modules["register"][m]]
    print(f"torch/mlflow at CLI start: {'YES: ' + ', '.join(heavy_hit) if heavy_hit else 'no'}")

    if args.importtime:
        print(f"slowest imports of --help (python -X importtime, cumulative, top {args.top}):")
        for micros, name in slowest_imports(env, args.top):
            print(f"  {micros / 1000:8.1f} ms  {name}")

    argv_out = [f"--repeats={args.repeats}"] + (["--skip-diagnose"] if args.skip_diagnose else [])
    argv_out += ["--importtime", f"--top={args.top}"] if args.importtime else []
    print(reproduce_line("startup.py", argv_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
