"""SIGKILL soak: kill `attnstore extract` and `attnstore analyze` at random moments and at each
step of a commit (every file written but no commit record; the record written but the old
files not yet removed), with and without --overwrite; after every kill, check the store row by
row, then rerun the command and check again.

    python benchmarks/soak.py                     # 24 kills, a few minutes on two cores
    python benchmarks/soak.py --kills 80 --seed 1

After a kill, Store.recover() cleans the store (readers delete nothing); then a run (analysis)
must be either absent or whole, byte-equal in every row to a reference written without kills
(created_at and the command line aside), with no Parquet row on disk that the views do not show
(no orphans).
The rerun must then complete it. Prints one line per kill and a summary table.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from attnstore.schema import TABLES
from attnstore.store import Store
from attnstore.transaction import CRASH_ENV

VOLATILE = {"created_at", "command"}  # differ between two writes of the same run by design


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "attnstore", *args]


def table_rows(store: Path, level: str) -> dict[str, list[tuple]]:
    """Every committed row of the level's tables, sorted, volatile columns left out."""
    s = Store(store)
    out = {}
    for name, t in TABLES.items():
        if t.level != level:
            continue
        data = s.read(name)
        cols = [c for c in data.column_names if c not in VOLATILE]
        rows = data.select(cols).to_pylist()
        out[name] = sorted(tuple(repr(r[c]) for c in cols) for r in rows)
    return out


def rows_on_disk(store: Path, level: str) -> int:
    """Rows in every Parquet file of the level's tables, committed or not."""
    return sum(
        pq.read_metadata(f).num_rows
        for name, t in TABLES.items()
        if t.level == level
        for f in (store / name).glob("**/*.parquet")
    )


def check(store: Path, level: str, reference: dict[str, list[tuple]]) -> str:
    """'absent' or 'whole'; raises AssertionError on anything else."""
    if not (store / "attnstore.json").exists():  # killed before the store was made
        assert not any(store.rglob("*.parquet")) if store.exists() else True
        return "absent"
    Store(store).recover()  # what the killed writer left (attnstore recover)
    rows = table_rows(store, level)
    primary = "runs" if level == "run" else "analyses"
    if not rows[primary]:
        assert all(not r for r in rows.values()), {n: len(r) for n, r in rows.items()}
        assert rows_on_disk(store, level) == 0, "orphan rows on disk"
        return "absent"
    for name, want in reference.items():
        assert rows[name] == want, f"{name}: {len(rows[name])} rows differ from the reference"
    assert rows_on_disk(store, level) == sum(map(len, reference.values())), "orphan rows"
    return "whole"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=24)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="attnstore-soak-"))
    extract = ["extract", "--samples", str(args.samples), "--no-analysis"]
    analyze = ["analyze"]

    # References, and how long each command takes when nothing kills it.
    ref = work / "reference"
    t = time.perf_counter()
    subprocess.run(cli(*extract, "--store", str(ref)), check=True, capture_output=True)
    wall = {"extract": time.perf_counter() - t}
    t = time.perf_counter()
    subprocess.run(cli(*analyze, "--store", str(ref)), check=True, capture_output=True)
    wall["analyze"] = time.perf_counter() - t
    reference = {"run": table_rows(ref, "run"), "analysis": table_rows(ref, "analysis")}

    outcomes: Counter[tuple[str, str, str]] = Counter()
    for i in range(args.kills):
        verb = rng.choice(["extract", "analyze"])
        level = "run" if verb == "extract" else "analysis"
        overwrite = rng.random() < 0.5
        store = work / f"s{i}"
        if overwrite:  # the run and its analysis are there already
            shutil.copytree(ref, store)
        elif verb == "analyze":  # the run is there, its analysis not yet
            subprocess.run(cli(*extract, "--store", str(store)), check=True, capture_output=True)
        cmd = cli(*(extract if verb == "extract" else analyze), "--store", str(store))
        cmd += ["--overwrite"] if overwrite else []
        env = dict(os.environ)
        if rng.random() < 0.5:  # at a step of the commit
            step = rng.choice(["written", "committed"])
            env[CRASH_ENV] = step
            how = f"step {step}"
            subprocess.run(cmd, env=env, capture_output=True)
        else:  # at a random moment
            delay = rng.uniform(0, wall[verb] * 1.1)
            how = f"at {delay:.2f} s"
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        state = check(store, level, reference[level])
        subprocess.run(cmd[: len(cmd) - int(overwrite)], check=True, capture_output=True)
        assert check(store, level, reference[level]) == "whole", "the rerun did not complete it"
        kind = "step" if how.startswith("step") else "random"
        outcomes[(verb, "overwrite" if overwrite else "new", kind)] += 1
        print(
            f"{i:3d} {verb:8s} {'--overwrite' if overwrite else '':11s} killed {how:14s} "
            f"-> {state}; rerun whole",
            flush=True,
        )
        shutil.rmtree(store)

    print("\nverb      write      kill at        kills  clean")
    for (verb, write, kind), n in sorted(outcomes.items()):
        print(f"{verb:9s} {write:10s} {kind:14s} {n:5d}  {n:5d}")
    print(f"\n{args.kills} of {args.kills} kills recovered clean, checked row by row")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
