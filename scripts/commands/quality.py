"""``rpaccel quality``: quality of multi-stage pipelines on MovieLens-100k beside the
random, popularity and item-kNN baselines."""

from __future__ import annotations

import sys

from .common import emit, models_dir

DEFAULT_PIPELINES = (
    "small:10",
    "medium:10",
    "large:10",
    "small:100,large:10",
    "small:300,medium:100,large:10",
)


def quality_rows(models_dir, pipelines=DEFAULT_PIPELINES, n_queries=None,
                 candidates: int = 1000, seed: int = 0, log=None, approx: bool = False,
                 progress=None, baselines: bool = True):
    """Evaluate pipelines on MovieLens-100k queries in float and int8 (and, with
    ``approx``, int8 with the approximate histogram filter between stages), after the
    random, popularity and item-kNN baselines on the same queries; ``progress`` is called
    after each evaluation.

    The queries: one per held-out rating (`rpaccel.golden.data.HOLDOUT` per user) of the
    first ``n_queries`` users (all 943 by default), each against ``candidates - 1``
    unrated items.
    """
    from ...golden.baselines import BASELINES, evaluate_baseline
    from ...golden.data import load_ml100k
    from ...golden.pipeline import (
        Pipeline,
        Stage,
        calibrate_window,
        evaluate,
        paired_difference,
        parse_pipeline,
    )
    from ...golden.train import build_models, calibration_batch

    qmodels = build_models(models_dir, log=log or (lambda s: print(s, file=sys.stderr)))
    fmodels = {k: q.float_model for k, q in qmodels.items()}
    ml = load_ml100k()
    users = None if n_queries is None else range(min(n_queries, ml.num_users))
    queries = ml.queries(candidates, seed=seed, users=users, every_held_out=True)
    rows, base = [], {}
    for name in BASELINES if baselines else ():
        base[name] = evaluate_baseline(name, ml, queries, seed=seed, ranks=True)
        rows.append(base[name])
        if progress:
            progress(rows[-1])
    refs = {"popularity": base["popularity"]["ranks"],
            "item_knn": base["item-kNN"]["ranks"]} if base else {}

    def run(pipeline):
        r = evaluate(pipeline, ml, queries, ranks=True)
        for ref, rank in refs.items():  # paired: same queries, per-query hit differences
            r[f"hr@10_vs_{ref}"], r[f"hr@10_vs_{ref}_se"] = paired_difference(r["ranks"], rank)
        rows.append(r)
        if progress:
            progress(r)

    windows = {}
    if approx:
        calib = calibration_batch(ml)
        windows = {k: calibrate_window(q.forward(calib)) for k, q in qmodels.items()}
    for spec in pipelines:
        for models in (fmodels, qmodels):
            run(parse_pipeline(spec, models))
        exact = parse_pipeline(spec, qmodels)
        if approx and len(exact.stages) > 1:
            stages = [Stage(st.model, st.keep, windows[st.model.name]) for st in exact.stages]
            stages[-1].window = None
            run(Pipeline(stages, name=spec))
    for r in rows:
        del r["ranks"]
    return rows


def quality_table(rows):
    from rich.table import Table

    t = Table(title=f"MovieLens-100k quality ({rows[0]['queries']} queries: every held-out "
              "rating, 1000 candidates; +- one standard error, paired for the differences)")
    for c in ("pipeline", "precision", "filter", "hr@1", "hr@5", "hr@10", "ndcg@10",
              "hr@10 - popularity", "hr@10 - item-kNN", "MACs/query"):
        t.add_column(c, justify="left" if c in ("pipeline", "precision", "filter") else "right")

    def vs(r, ref):
        if f"hr@10_vs_{ref}" not in r:
            return "-"
        return f"{r[f'hr@10_vs_{ref}']:+.4f} +- {r[f'hr@10_vs_{ref}_se']:.4f}"

    for r in rows:
        t.add_row(r["pipeline"], r["precision"], r["filter"], f"{r['hr@1']:.4f}",
                  f"{r['hr@5']:.4f}", f"{r['hr@10']:.4f} +- {r.get('hr@10_se', 0):.4f}",
                  f"{r['ndcg@10']:.4f} +- {r.get('ndcg@10_se', 0):.4f}",
                  vs(r, "popularity"), vs(r, "item_knn"), f"{r['macs_per_query']:,}")
    return t


def run(args) -> int:
    if args.dataset != "ml100k":
        raise ValueError(f"--dataset must be 'ml100k', not {args.dataset!r}")
    pipelines = args.pipeline or DEFAULT_PIPELINES
    rows = quality_rows(models_dir(args.models), pipelines, args.queries, args.candidates,
                        args.seed, approx=args.approx)
    emit(rows, args.json, None if args.json else quality_table(rows))
    return 0


def add_parser(sub):
    s = sub.add_parser("quality", help="quality of multi-stage pipelines")
    s.add_argument("--dataset", default="ml100k")
    s.add_argument("--models", help="model directory (default build/models)")
    s.add_argument("--queries", type=int,
                   help="first N users only (default all 943; one query per held-out rating)")
    s.add_argument("--candidates", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--pipeline", action="append",
                   help="MODEL:KEEP[,MODEL:KEEP...] (repeatable; default: the standard set)")
    s.add_argument("--approx", action="store_true",
                   help="also int8 with the approximate histogram filter between stages")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run)
    return s
