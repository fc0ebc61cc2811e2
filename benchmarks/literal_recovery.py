"""How well dominant literals recover the hidden conjunction's literals, per row view.

    python benchmarks/literal_recovery.py --samples 200 [--backend sklearn] [--store DIR]

Extracts the bundled model on fresh conjunction prompts, analyses the run with every view, and
prints per view: literal precision (share of dominant literals that are in the target) against
the precision of literals drawn at random, recall, and how much the clusters follow position
(eta2_point) and y (nmi_y); over all heads and for the best head. All from head_summary.
Then, per view, the best head against the permutation null (query literal_recovery_null:
hidden functions shuffled across prompts; --permutations of them): the best of the shuffled
heads' lifts it must beat (max_null_upper, the 95% quantile) and its max-statistic p-value.
"""

from __future__ import annotations

import argparse
import tempfile

from attnstore.analysis.run import analyze
from attnstore.connection import connect
from attnstore.extraction import extract
from attnstore.queries import query
from attnstore.vocab import VIEWS

SUMMARY = """
with per_view as (
    select h.view, h.layer, h.head, h.query_kind, h.literal_precision, h.literal_recall,
        h.chance_precision, h.precision_lift, h.mean_eta2_point, h.mean_nmi_y,
        h.mean_silhouette
    from head_summary as h
    join analyses as a using (analysis_id)
    where a.backend = $backend and a.run_id = $run_id
)
select
    view,
    round(avg(literal_precision), 3) as precision,
    round(avg(chance_precision), 3) as chance,
    round(avg(precision_lift), 2) as lift,
    round(avg(literal_recall), 3) as recall,
    round(max(precision_lift), 2) as best_head_lift,
    arg_max(format('L{}H{}{}', layer, head, query_kind), precision_lift) as best_head,
    round(avg(mean_eta2_point), 3) as eta2_point,
    round(avg(mean_nmi_y), 3) as nmi_y,
    round(avg(mean_silhouette), 3) as silhouette,
from per_view
group by view
order by view
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", default="sklearn")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--permutations", type=int, default=200, help="for the permutation null")
    ap.add_argument("--store", default=None, help="keep the store here (default: temporary)")
    args = ap.parse_args()
    store = args.store or tempfile.mkdtemp(prefix="attnstore-literals-")
    run = extract(store, samples=args.samples, seed=args.seed).run_id
    analyses = {
        view: analyze(store, run, backend=args.backend, view=view, device=args.device).analysis_id
        for view in VIEWS
    }
    df = connect(store).execute(SUMMARY, {"backend": args.backend, "run_id": run}).df()
    print(
        f"bundled model, {args.samples} conjunction prompts (seed {args.seed}), "
        f"backend {args.backend}; store: {store}"
    )
    print(df.to_string(index=False))
    print(f"\nthe best head against {args.permutations} shuffles of the hidden functions")
    for view, analysis_id in analyses.items():
        null = query(
            store, "literal_recovery_null", analysis_id=analysis_id,
            permutations=args.permutations,
        )  # fmt: skip
        best = null.iloc[0]  # ranked by precision_lift
        print(
            f"{view:<12} best L{best.layer}H{best['head']}{best.query_kind} lift "
            f"{best.precision_lift:.2f}, its own null {best.null_lift_mean:.2f} "
            f"[{best.null_lift_lower:.2f}, {best.null_lift_upper:.2f}] p={best.lift_p_value:.3f}; "
            f"best of the shuffled heads (95%) {best.max_null_upper:.2f}, "
            f"max-statistic p={best.max_p_value:.3f}"
        )


if __name__ == "__main__":
    main()
