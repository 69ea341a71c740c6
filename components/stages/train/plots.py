"""A self-contained HTML training-curve plot (inline SVG: no plotting library, no network)."""

from __future__ import annotations

import html
from typing import Any

COLORS = {"accuracy": "#1b7837", "macro_f1": "#5aae61", "loss": "#c51b7d", "train_loss": "#e9a3c9"}


def _polyline(points: list[tuple[float, float]], color: str) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points)
    return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>{dots}'


def training_curve_html(history: list[dict[str, Any]], title: str, best_epoch: int | None = None) -> str:
    width, height, pad = 640, 300, 45
    epochs = [h["epoch"] for h in history] or [1]
    lo_e, hi_e = min(epochs), max(max(epochs), min(epochs) + 1)

    def panel(metrics: tuple[str, ...], top: int, label: str) -> str:
        values = [h[m] for h in history for m in metrics if m in h]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        x = lambda e: pad + (e - lo_e) / (hi_e - lo_e) * (width - 2 * pad)  # noqa: E731
        y = lambda v: top + 10 + (1 - (v - lo) / (hi - lo)) * (height / 2 - 40)  # noqa: E731
        parts = [f'<text x="5" y="{top + 12}" font-size="12">{html.escape(label)}</text>',
                 f'<text x="5" y="{top + 28}" font-size="10">{hi:.4g}</text>',
                 f'<text x="5" y="{top + height / 2 - 28}" font-size="10">{lo:.4g}</text>']
        for m in metrics:
            pts = [(x(h["epoch"]), y(h[m])) for h in history if m in h]
            if pts:
                parts.append(_polyline(pts, COLORS.get(m, "#333")))
        if best_epoch:
            bx = x(best_epoch)
            parts.append(f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{top + 5}" y2="{top + height / 2 - 25}" '
                         'stroke="#999" stroke-dasharray="4"/>')
        return "".join(parts)

    legend = " ".join(f'<span style="color:{c}">&#9632; {m}</span>' for m, c in COLORS.items())
    ticks = "".join(f'<text x="{pad + (e - lo_e) / (hi_e - lo_e) * (width - 2 * pad):.1f}" y="{height - 5}" '
                    f'font-size="10" text-anchor="middle">{e}</text>' for e in epochs)
    rows = "".join("<tr>" + "".join(f"<td>{h.get(k, ''):.4f}</td>" if isinstance(h.get(k), float)
                                    else f"<td>{h.get(k, '')}</td>" for k in
                                    ("epoch", "accuracy", "macro_f1", "loss", "train_loss")) + "</tr>"
                   for h in history)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif'><h2>{html.escape(title)}</h2><p>{legend} "
            f"(dashed: best epoch {best_epoch})</p>"
            f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"
            f"{panel(('accuracy', 'macro_f1'), 0, 'validation accuracy / macro-F1')}"
            f"{panel(('loss', 'train_loss'), height // 2 - 10, 'loss (validation / train)')}{ticks}</svg>"
            "<table border='1' cellpadding='3' style='border-collapse:collapse'><tr><th>epoch</th><th>accuracy</th>"
            f"<th>macro_f1</th><th>loss</th><th>train_loss</th></tr>{rows}</table></body></html>")
