"""How long patching every head of the bundled model takes, and what it costs next to one
forward pass, in one run.

    python benchmarks/bench_patch.py                    # 1,000 prompts (the issue's target)
    python benchmarks/bench_patch.py --samples 200 --paths

Extracts ``--samples`` prompts of the bundled model (3 layers x 4 heads, 40 points) into a
temporary store, then times, each call as a notebook would make it (imports and the
extraction excluded):

- ``patch``: an activation patch of every head's z at every position (flip_label), written;
- ``patch q``: the same for every head's queries;
- ``attribute``: the direct logit attribution of every prompt and point, written;
- with ``--paths``, the path matrix ``*->*.q`` (48 sender -> receiver pairs), written;

and, as the unit they are measured in, one plain forward pass over the same prompts. Prints
seconds, wall and CPU (every thread), and each time over the forward pass. The issue's target:
patching every head over 1,000 prompts within 2 minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--paths", action="store_true", help="also time the path matrix")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import torch

    from attnstore.attribution import attribute
    from attnstore.checkpoint import load_checkpoint
    from attnstore.extraction import extract
    from attnstore.patching import patch
    from attnstore.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        run_id = extract(store, samples=args.samples, seed=0).run_id
        x, y = Store(store).prompts(Store(store).run(run_id))
        model = load_checkpoint("default").model.eval()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype("float32"))
        with torch.no_grad():
            _, unit, _ = timed(lambda: model(xt, yt))
        rows = [("forward pass", unit, unit)]
        b = args.batch_size
        runs = [
            ("patch z", lambda: patch(store, run_id, "flip_label", batch_size=b)),
            ("patch q", lambda: patch(store, run_id, "flip_label", target="q", batch_size=b)),
            ("attribute", lambda: attribute(store, run_id)),
        ]
        if args.paths:
            runs.append(
                ("paths *->*.q", lambda: patch(store, run_id, "flip_label", paths=["*->*.q"]))
            )
        for name, fn in runs:
            _, wall, cpu = timed(fn)
            rows.append((name, wall, cpu))
    print(f"{args.samples} prompts, bundled model, torch threads {torch.get_num_threads()}")
    print(f"{'':14} {'wall s':>8} {'cpu s':>8} {'x forward':>10}")
    for name, wall, cpu in rows:
        print(f"{name:14} {wall:8.2f} {cpu:8.2f} {wall / unit:10.1f}")
    patch_wall = rows[1][1]
    verdict = "within" if patch_wall <= 120 else "OVER"
    print(f"patching every head: {patch_wall:.1f} s, {verdict} the 2-minute target")


if __name__ == "__main__":
    main()
