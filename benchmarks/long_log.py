"""What ``paramdoctor diagnose`` costs on long logs: wall time and peak memory of the whole process.

Curves from long trainings hold hundreds of thousands of per-step points; a
signal or parser that is quadratic in the number of points (pairwise slopes,
one Python dict per row) turns a diagnosis into minutes and gigabytes. This
script writes two logs into a scratch folder (``/tmp`` by default):

* ``long-every-N.csv``: ``--rows`` rows (default 1,000,000) of
  ``step,epoch,train_loss,val_loss,lr``, a noisy decaying training loss and a
  cosine learning rate on every row, the validation loss every N rows (empty
  cells between), one file per N in ``--val-every`` (default 1000 and 1: a
  thousand evaluations, and an evaluation on every row, whose trend tests run
  on curves of a million points);
* ``metrics.csv``: a Lightning ``CSVLogger`` file of about ``--realistic-mb``
  MB (default 50): per-step rows (``train_loss_step``, ``lr-AdamW``,
  ``grad_norm`` and per-layer gradient norms) and separate per-epoch rows
  (``val_loss``, ``val_acc``, ``train_loss_epoch``, ``train_acc_epoch``), as
  Lightning writes them.

Each is diagnosed by ``paramdoctor diagnose FILE --no-log --json`` in a fresh
process; the figures are its wall time and its peak resident memory (the
child's ``ru_maxrss``, read with ``os.wait4`` for that one process, which is
what ``resource.getrusage(RUSAGE_CHILDREN)`` reports when it is the only
child). Targets: 1,000,000 rows in under ~10 s and ~1 GB.

    .venv/bin/python benchmarks/long_log.py
    .venv/bin/python benchmarks/long_log.py --rows 200000 --realistic-mb 10 --repeats 3
    PYTHONPATH=/path/to/an/older/checkout .venv/bin/python benchmarks/long_log.py   # the same logs, older code
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import cpu_model, median, reproduce_line  # noqa: E402

_CHUNK = 50_000  # rows formatted at a time: bounded memory while writing


def write_long_csv(path: Path, rows: int, val_every: int, seed: int = 0) -> None:
    """``step,epoch,train_loss,val_loss,lr``; one epoch is ``val_every`` steps, validated at its end."""
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        f.write("step,epoch,train_loss,val_loss,lr\n")
        for start in range(0, rows, _CHUNK):
            step = np.arange(start, min(start + _CHUNK, rows))
            t = step / max(rows - 1, 1)
            train = 2.3 * np.exp(-4.0 * t) + 0.2 + 0.05 * rng.standard_normal(step.size)
            lr = 1e-3 * 0.5 * (1.0 + np.cos(np.pi * t))
            val = 2.3 * np.exp(-3.5 * t) + 0.3 + 0.01 * rng.standard_normal(step.size)
            epoch = step // val_every
            validated = (step + 1) % val_every == 0
            lines = [
                f"{s},{e},{tr:.5f},{v:.5f},{r:.6g}\n" if ok else f"{s},{e},{tr:.5f},,{r:.6g}\n"
                for s, e, tr, v, r, ok in zip(step.tolist(), epoch.tolist(), train.tolist(), val.tolist(), lr.tolist(), validated.tolist())
            ]
            f.writelines(lines)


def write_lightning_csv(path: Path, megabytes: float, seed: int = 1) -> int:
    """A Lightning ``metrics.csv`` of about ``megabytes`` MB; returns its number of rows."""
    rng = np.random.default_rng(seed)
    layers = [f"grad_norm/layer{i}" for i in range(8)]
    header = ["epoch", "step", "train_loss_step", "lr-AdamW", "grad_norm", *layers, "val_loss", "val_acc", "train_loss_epoch", "train_acc_epoch"]
    steps_per_epoch = 500
    per_step = 12 * 11  # about 11 characters per number, 12 numbers a row
    total_steps = int(megabytes * 1e6 / per_step)
    epochs = max(total_steps // steps_per_epoch, 1)
    rows = 0
    with path.open("w") as f:
        f.write(",".join(header) + "\n")
        for epoch in range(epochs):
            step = np.arange(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch)
            t = step / (epochs * steps_per_epoch)
            loss = 2.0 * np.exp(-3.0 * t) + 0.1 + 0.08 * rng.standard_normal(step.size)
            lr = 3e-4 * 0.5 * (1.0 + np.cos(np.pi * t))
            grad = 1.0 + 0.2 * rng.standard_normal(step.size)
            layer = np.abs(0.1 + 0.02 * rng.standard_normal((step.size, len(layers))))
            lines = []
            for i, s in enumerate(step.tolist()):
                cells = [str(epoch), str(s), f"{loss[i]:.6f}", f"{lr[i]:.6e}", f"{grad[i]:.6f}", *(f"{x:.6f}" for x in layer[i]), "", "", "", ""]
                lines.append(",".join(cells) + "\n")
            end = (epoch + 1) / epochs
            val = 2.0 * np.exp(-2.5 * end) + 0.2 + 0.01 * rng.standard_normal()
            acc = 0.95 - 0.6 * np.exp(-3.0 * end)
            cells = [str(epoch), str(int(step[-1])), "", "", "", *([""] * len(layers)), f"{val:.6f}", f"{acc:.6f}", f"{loss.mean():.6f}", f"{acc + 0.02:.6f}"]
            lines.append(",".join(cells) + "\n")
            f.writelines(lines)
            rows += len(lines)
    return rows


def diagnose(path: Path, timeout: float) -> tuple[float, float, int, dict | None, str]:
    """Wall seconds, peak RSS in MB, exit code, the JSON printed (or None) and stderr's last line."""
    command = [str(Path(sys.executable)), "-m", "paramdoctor", "diagnose", str(path), "--no-log", "--json"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{path.parent}/mlflow.db"}
    start = time.perf_counter()
    with open(path.parent / "stdout.json", "wb") as out, open(path.parent / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=path.parent, env=env)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    text = (path.parent / "stdout.json").read_text()
    try:
        result = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        result = None
    lines = (path.parent / "stderr.txt").read_text().strip().splitlines()
    return wall, peak_mb, code, result, lines[-1][:200] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of long.csv (default 1,000,000)")
    parser.add_argument("--val-every", default="1000,1", help="comma-separated N: one long log per N, validated every N rows")
    parser.add_argument("--realistic-mb", type=float, default=50.0, help="size of the Lightning metrics.csv in MB (0: skip)")
    parser.add_argument("--repeats", type=int, default=1, help="diagnoses per file (the median is reported)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a diagnosis is killed")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/paramdoctor-long-log"), help="scratch folder for the logs")
    args = parser.parse_args(argv)

    print(f"machine: cpu: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, python {sys.version.split()[0]}")
    cases: list[tuple[str, Path]] = []
    for every in (int(n) for n in args.val_every.split(",")):
        folder = args.dir / f"long-every-{every}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"long-every-{every}.csv"
        t = time.perf_counter()
        write_long_csv(path, args.rows, every)
        size = path.stat().st_size / 1e6
        print(f"wrote {path}: {args.rows:,} rows, {size:.1f} MB ({time.perf_counter() - t:.1f} s)")
        cases.append((f"{path.name} ({args.rows:,} rows)", path))
    if args.realistic_mb > 0:
        folder = args.dir / "lightning"
        folder.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        rows = write_lightning_csv(folder / "metrics.csv", args.realistic_mb)
        size = (folder / "metrics.csv").stat().st_size / 1e6
        print(f"wrote {folder / 'metrics.csv'}: {rows:,} rows, {size:.1f} MB ({time.perf_counter() - t:.1f} s)")
        cases.append((f"Lightning metrics.csv ({size:.0f} MB, {rows:,} rows)", folder / "metrics.csv"))

    print()
    print(f"{'log':<48} {'wall s':>8} {'peak RSS MB':>12} {'exit':>5}  verdict")
    for label, path in cases:
        walls, peaks = [], []
        for _ in range(args.repeats):
            wall, peak, code, result, err = diagnose(path, args.timeout)
            walls.append(wall)
            peaks.append(peak)
        verdict = result.get("status") if result else f"no JSON ({err or 'killed'})"
        if result:
            codes = [f["code"] for f in result.get("findings", [])]
            verdict += f" {','.join(codes)}" if codes else ""
        print(f"{label:<48} {median(walls):>8.1f} {max(peaks):>12.0f} {code:>5}  {verdict}")
    print()
    print(reproduce_line("long_log.py", argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
