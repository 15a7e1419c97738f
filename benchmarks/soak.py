"""Soak: train, kill at random (SIGINT, SIGTERM, SIGKILL), resume, with tracking-server outages, many times over.

A real ``mlflow server`` runs on a loopback port with a SQLite backend. One
reference run trains uninterrupted first. Then chains of the same config
train: each process of a chain gets a random signal at a random moment and
the chain goes on with ``paramdoctor train --resume RUN`` until the run
finishes; meanwhile the server is stopped now and then (SIGKILL) and
restarted later on the same port and store, so runs go on through outages,
spooling their metrics on local disk. At the end ``paramdoctor sync``
delivers what is still spooled, and every finished chain is compared with
the reference, metric point by metric point:

- expected: the (key, step) points of the reference run (timing series included);
- delivered: those the chain's run holds;
- duplicated: (key, step) points the chain's run holds more than once;
- lost: expected points the chain's run lacks;
- final accuracy: the chain's last val/acc beside the reference's (the same
  seed, data order and RNG streams give the same numbers on a CPU).

Target: 0 duplicated, 0 lost outside the last flush interval of a SIGKILL.

    .venv/bin/python benchmarks/soak.py --cycles 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ensure_repo_on_path, machine_line, reproduce_line  # noqa: E402

ensure_repo_on_path()

BIN = Path(sys.executable).parent
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` on 127.0.0.1:PORT over one SQLite store; stop and start keep port and store."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.outages: list[float] = []

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        with self.lock:
            log = open(self.root / "server.log", "ab")
            self.proc = subprocess.Popen(
                [
                    str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                    "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
                    "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1",
                ],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as r:
                        if r.status == 200:
                            return
                except OSError:
                    time.sleep(0.3)
            raise RuntimeError(f"mlflow server did not come up on {self.uri}; see {self.root / 'server.log'}")

    def stop(self) -> None:
        with self.lock:
            if self.proc is not None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                self.proc = None

    def outage(self, seconds: float) -> None:
        t0 = time.monotonic()
        self.stop()
        time.sleep(seconds)
        self.start()
        self.outages.append(time.monotonic() - t0)


@dataclass
class Chain:
    """One run carried through kills and resumes until it finishes."""

    run_id: str | None = None
    processes: int = 0
    signals: Counter = field(default_factory=Counter)
    finished: bool = False
    refused_starts: int = 0


def train_cmd(config: Path, resume: str | None) -> list[str]:
    if resume:
        return [str(BIN / "paramdoctor"), "train", "-q", "--resume", resume]
    return [str(BIN / "paramdoctor"), "train", "-q", str(config)]


def trainer_holds_lock(workdir: Path, run_id: str | None, known: set[str]) -> str | None:
    """The run whose trainer holds its checkpoint lock now (training has begun), else None."""
    import fcntl

    folders = [workdir / ".paramdoctor" / "checkpoints" / run_id] if run_id else [
        p for p in (workdir / ".paramdoctor" / "checkpoints").glob("*") if p.name not in known
    ]
    for folder in folders:
        try:
            fd = os.open(folder / ".lock", os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return folder.name
        finally:
            os.close(fd)
    return None


def wait_for_training(proc: subprocess.Popen, workdir: Path, run_id: str | None, known: set[str], timeout: float) -> str | None:
    """Block until the process holds its run's lock (None when it exits or times out first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = trainer_holds_lock(workdir, run_id, known)
        if found:
            return found
        time.sleep(0.05)
    return None


def run_id_of(workdir: Path, known: set[str]) -> str | None:
    """The run a fresh process created: its checkpoint folder is the only new one."""
    folders = {p.name for p in (workdir / ".paramdoctor" / "checkpoints").glob("*") if p.is_dir()}
    new = folders - known
    return next(iter(new)) if len(new) == 1 else None


def _reason(stderr: str) -> str:
    """The last line a process printed, shortened: why it exited as it did."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return (lines[-1][:110] if lines else "(nothing printed)")


def points(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in run.data.metrics}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=50, help="signals delivered to a live trainer (default 50)")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--outage-every", type=float, default=25.0, help="mean seconds between server outages")
    parser.add_argument("--outage-s", type=float, nargs=2, default=(3.0, 12.0), help="outage length range (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    root = Path(tempfile.mkdtemp(prefix="paramdoctor-soak-"))
    workdir = root / "work"
    workdir.mkdir()
    server = Server(root, free_port())
    print(machine_line())
    print(f"scratch {root}; mlflow server {server.uri}", flush=True)
    server.start()
    config = workdir / "soak.yaml"
    config.write_text(
        "experiment:\n  name: soak\n"
        "data:\n  subset: 1024\n"
        f"trainer:\n  max_epochs: {args.epochs}\n  flush_every_s: 0.5\n  heartbeat_every_s: 2\n"
        "early_stopping:\n  enabled: false\n"
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": server.uri,
        # fail fast while the server is away, so the spool (not MLflow's own retries) carries the outage
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
        "OMP_NUM_THREADS": "1",
    }

    from mlflow.tracking import MlflowClient

    reference = subprocess.Popen(train_cmd(config, None), cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    reference_id = wait_for_training(reference, workdir, None, set(), timeout=300)
    t0 = time.monotonic()
    if reference.wait() != 0 or reference_id is None:
        print(reference.stderr.read().decode(errors="replace"))
        return 1
    process_s = time.monotonic() - t0  # from the run's start to the process's end (closing and exit included)
    client = MlflowClient(server.uri)
    known = {reference_id}
    # the epochs themselves: signals land at random moments of training, not of the process's exit
    training_s = sum(m.value for m in client.get_metric_history(reference_id, "epoch/time_s"))
    print(
        f"reference run {reference_id}: {training_s:.1f} s of epochs, {process_s:.1f} s from its start to the "
        "process's exit, uninterrupted",
        flush=True,
    )

    stop_outages = threading.Event()

    def outages() -> None:
        while not stop_outages.wait(rng.expovariate(1.0 / args.outage_every)):
            server.outage(rng.uniform(*args.outage_s))

    outage_thread = threading.Thread(target=outages, daemon=True)
    outage_thread.start()

    chains: list[Chain] = []
    chain = Chain()
    delivered_signals = 0
    exits: Counter = Counter()
    reasons: Counter = Counter()
    while delivered_signals < args.cycles:
        proc = subprocess.Popen(
            train_cmd(config, chain.run_id), cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        chain.processes += 1
        started = wait_for_training(proc, workdir, chain.run_id, known, timeout=300)
        if started and chain.run_id is None:
            chain.run_id = started
        # a random moment of the training (a resumed process has less left: some signals find it finished)
        delay = rng.uniform(0.0, training_s * 1.1)
        try:
            if not started:
                raise RuntimeError("the process ended before its training began")
            proc.wait(timeout=delay)
        except RuntimeError:
            pass
        except subprocess.TimeoutExpired:
            name = rng.choice(list(SIGNALS))
            proc.send_signal(SIGNALS[name])
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                name += "+hang"
            chain.signals[name] += 1
            delivered_signals += 1
        exits[proc.returncode] += 1
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        with open(root / "trace.txt", "a") as trace:
            trace.write(
                f"{'resume' if chain.processes > 1 else 'fresh'} run={chain.run_id} started={started is not None} "
                f"delay={delay:.2f} rc={proc.returncode} signals={dict(chain.signals)} err={_reason(err)!r}\n"
            )
        if chain.run_id is None:
            chain.run_id = run_id_of(workdir, known)
        if proc.returncode == 2 and chain.run_id is None:
            chain.refused_starts += 1  # the server was away when the run was to be created: nothing to resume
            time.sleep(2)
            continue
        if proc.returncode == 2:
            reasons[_reason(err)] += 1
            if " is FINISHED " in err:
                # the signal came after the last epoch, while the process was closing a finished run
                proc.returncode = 0
            elif "still running" in err or "cannot reach" in err or "cannot open" in err:
                time.sleep(2)
                continue
            else:
                print(f"\nunexpected refusal: {err.strip()[-500:]}")
        elif proc.returncode not in (0, 130, -9):
            reasons[f"exit {proc.returncode}: {_reason(err)}"] += 1
        if chain.run_id:
            known.add(chain.run_id)
        if proc.returncode in (0, 1):
            chain.finished = True
            chains.append(chain)
            chain = Chain()
        print(
            f"\rsignals {delivered_signals}/{args.cycles}  chains finished {len(chains)}  outages {len(server.outages)}",
            end="", flush=True,
        )
    stop_outages.set()
    outage_thread.join()
    if server.proc is None:
        server.start()
    # the unfinished chain: carry it to its end with no more signals
    while chain.run_id and not chain.finished:
        done = subprocess.run(train_cmd(config, chain.run_id), cwd=workdir, env=env, capture_output=True, text=True)
        chain.processes += 1
        if done.returncode in (0, 1):
            chain.finished = True
        elif "still running" in done.stderr or "cannot" in done.stderr:
            time.sleep(2)
        else:
            print(f"\nresume failed: {done.stderr.strip()[-500:]}")
            break
    if chain.finished:
        chains.append(chain)
    synced = subprocess.run([str(BIN / "paramdoctor"), "sync"], cwd=workdir, env=env, capture_output=True, text=True)
    print(f"\nparamdoctor sync: exit {synced.returncode}: {synced.stdout.strip()[-300:]}")

    expected_points = points(client, reference_id)
    expected_keys = {(k, s) for k, series in expected_points.items() for s, _ in series}
    reference_acc = sorted(expected_points["val/acc"])[-1][1]
    totals = Counter()
    accuracy_gaps = []
    for c in chains:
        got = points(client, c.run_id)
        pairs = Counter((k, s) for k, series in got.items() for s, _ in series)
        totals["expected"] += len(expected_keys)
        totals["delivered"] += len(expected_keys & set(pairs))
        totals["duplicated"] += sum(n - 1 for n in pairs.values() if n > 1)
        totals["lost"] += len(expected_keys - set(pairs))
        totals["extra"] += len(set(pairs) - expected_keys)
        missing = sorted(expected_keys - set(pairs))
        doubled = sorted(k for k, n in pairs.items() if n > 1)
        if missing or doubled:
            keys_missing = Counter(k for k, _ in missing)
            print(
                f"run {c.run_id} ({client.get_run(c.run_id).info.status}, {c.processes} processes, signals "
                f"{dict(c.signals)}): lost {len(missing)} {dict(keys_missing.most_common(4))}, "
                f"first lost steps {[s for _, s in missing[:5]]}; twice {doubled[:5]}"
            )
        final = sorted(got.get("val/acc", [(0, float("nan"))]))[-1][1]
        accuracy_gaps.append(final - reference_acc)
        status = client.get_run(c.run_id).info.status
        totals[f"status {status}"] += 1
    signals = sum((c.signals for c in chains + ([chain] if not chain.finished else [])), Counter())
    print()
    print(f"signals delivered to live trainers: {delivered_signals} ({', '.join(f'{k} {v}' for k, v in sorted(signals.items()))})")
    print(f"server outages: {len(server.outages)} (each {min(server.outages, default=0):.0f}-{max(server.outages, default=0):.0f} s incl. restart)")
    print(f"trainer processes: {sum(c.processes for c in chains)}; exit codes {dict(sorted(exits.items()))}")
    for reason, n in reasons.most_common():
        print(f"  {n:>3} x {reason}")
    print(f"runs carried to the end: {len(chains)} ({', '.join(f'{k} {v}' for k, v in totals.items() if k.startswith('status'))})")
    print(f"metric points expected {totals['expected']}, delivered {totals['delivered']}, duplicated {totals['duplicated']}, "
          f"lost {totals['lost']} (and {totals['extra']} not in the reference)")
    if accuracy_gaps:
        worst = max(accuracy_gaps, key=abs)
        print(f"final val/acc: reference {reference_acc:.4f}; resumed runs differ by at most {worst:+.4f} "
              f"({sum(1 for g in accuracy_gaps if g == 0)}/{len(accuracy_gaps)} identical)")
    print(json.dumps({"signals": delivered_signals, "outages": len(server.outages), **totals}))
    print(reproduce_line("soak.py", sys.argv[1:]))
    server.stop()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if totals["duplicated"] == 0 and totals["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
