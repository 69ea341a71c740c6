"""`conveyor runs`: training runs recorded in the store."""

from __future__ import annotations

from components.common.storage import open_store
from components.tracking.runs import compare, list_runs, read_run, summary_row
from pipelines.cli.common import print_json, print_record, print_table


def cmd_runs_list(args) -> int:
    rows = [summary_row(r) for r in list_runs(open_store(args.store))]
    if args.json:
        print_json(rows)
        return 0
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else v)  # noqa: E731
    print_table(("RUN", "STATUS", "FAMILY", "DATASET", "VAL_ACC", "TEST_ACC", "EPOCHS", "SECONDS"),
                 [tuple(fmt(r[k]) for k in ("run_id", "status", "family", "dataset", "val_accuracy", "test_accuracy",
                                            "epochs", "seconds")) for r in rows])
    return 0


def cmd_runs_show(args) -> int:
    print_record(read_run(open_store(args.store), args.run_id), args.json)
    return 0


def cmd_runs_compare(args) -> int:
    store = open_store(args.store)
    result = compare([read_run(store, r) for r in args.run_ids])
    if args.json:
        print_json(result)
        return 0
    runs = result["runs"]
    rows = [(name, *[str(v) for v in values]) for name, values in result["differing_params"].items()]
    for split in ("validation", "test"):
        for metric in ("accuracy", "macro_f1", "loss"):
            rows.append((f"{split}.{metric}", *[f"{result['metrics'][r][split].get(metric, float('nan')):.4f}"
                                                for r in runs]))
    print_table(("", *runs), rows)
    return 0
