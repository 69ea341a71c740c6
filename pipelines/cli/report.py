"""`conveyor report delivery`: delivery figures from the audit log."""

from __future__ import annotations

from components.common import audit
from components.common.errors import InputError
from components.common.storage import open_store
from components.stages.release.delivery import delivery_figures, parse_window
from components.stages.release.gauges import push_delivery
from pipelines.cli.common import print_json


def cmd_report_delivery(args) -> int:
    try:
        window = parse_window(args.window)
    except ValueError as exc:
        raise InputError(f"--window: {exc}") from exc
    figures = delivery_figures(audit.read_entries(open_store(args.store)), model=args.model, window=window)
    if args.push:
        try:
            push_delivery(args.push, figures)
        except OSError as exc:
            raise InputError(f"--push {args.push}: the Pushgateway did not take the figures ({exc})") from exc
    if args.json:
        print_json(figures)
        return 0

    def hours(value) -> str:
        return "n/a" if value is None else (f"{value * 60:.1f} min" if value < 1 else f"{value:.1f} h")

    lead, restore = figures["lead_time_hours"], figures["time_to_restore_hours"]
    rate = figures["change_failure_rate"]
    print(f"delivery of {figures['model'] or 'every model'} over {figures['window_days']:g} days "
          f"({figures['from']} to {figures['to']}), from the audit log:")
    print(f"  deployment frequency   {figures['deployment_frequency_per_day']:.3g} per day "
          f"({figures['production_promotions']} production promotions)")
    print(f"  lead time for changes  median {hours(lead['median'])}, p90 {hours(lead['p90'])} "
          f"({lead['count']} promotions traced to their data version)")
    print(f"  change failure rate    {'n/a' if rate is None else f'{rate:.0%}'} "
          f"({len(figures['failed_releases'])} of {figures['production_releases']} production releases)")
    print(f"  time to restore        median {hours(restore['median'])} ({restore['count']} restorations; "
          f"{restore['alerts']} drift/accuracy alerts)")
    return 0
