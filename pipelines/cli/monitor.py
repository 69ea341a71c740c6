"""`conveyor monitor`: one monitoring window now, and the retraining decision."""

from __future__ import annotations

import datetime as dt

from components.common.storage import open_store
from components.composition.config import load_config
from components.stages.monitor import trigger
from components.stages.monitor.alerts import push
from components.stages.monitor.executor import expire_logs, monitor_window
from pipelines.cli.common import output_file, print_json


def cmd_monitor(args) -> int:
    """One monitoring window now: verdict, trigger decision (recorded), optional Pushgateway push."""
    html = output_file(args.html, "--html")  # before the decision is recorded
    cfg = load_config(args.config)
    model = args.model or cfg.model_name
    store = open_store(args.store)
    now = dt.datetime.now(dt.UTC)
    expired = expire_logs(store, model, cfg.monitor.retention_days, now)
    verdict, page = monitor_window(store, model, cfg.monitor, cfg.split, now=now)
    decision = trigger.decide(cfg.monitor.trigger, verdict, trigger.history(store, model), now)
    decision["record"] = trigger.record(store, model, decision)
    if cfg.monitor.pushgateway_url:
        push(cfg.monitor.pushgateway_url, verdict, decision)
    if html:
        with open(html, "w", encoding="utf-8") as handle:
            handle.write(page)
    print_json({"status": verdict["status"], "signals": verdict.get("signals"), "window": verdict["window"],
                 "action": decision["action"], "reasons": decision["reasons"], "record": decision["record"],
                 "retention": expired})
    return 0
