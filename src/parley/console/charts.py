"""The overview's charts as inline SVG, drawn on the server: no charting library, nothing fetched by the page.

Each function returns SVG markup for values over time buckets (oldest first); a missing value (``None``) is
a gap.  Text in the markup is escaped here, so templates may insert it as it is.
"""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 24
COLOURS = ("#2563eb", "#f59e0b", "#dc2626", "#059669")


def _number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def _frame(title: str, top: float, labels: list[str], unit: str) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
                   f'{escape(_number(top * fraction))}{escape(unit) if fraction else ""}</text>')
    if labels:  # first, middle and last bucket
        plot_w, last = WIDTH - LEFT - RIGHT, len(labels) - 1
        for index in sorted({0, len(labels) // 2, last}):
            x = LEFT + plot_w * (index + 0.5) / len(labels)
            anchor = "start" if index == 0 and last else "end" if index == last and last else "middle"
            out.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}" class="axis">'
                       f'{escape(labels[index])}</text>')
    return out


def _top(values: list[float]) -> float:
    peak = max(values, default=0.0)
    return peak * 1.1 if peak > 0 else 1.0


def stacked_bars(title: str, labels: list[str], series: dict[str, list[float]], unit: str = "",
                 colours: tuple[str, ...] = COLOURS) -> str:
    """Bars per bucket, one colour per series, stacked."""
    count = len(labels)
    totals = [sum(values[i] for values in series.values()) for i in range(count)]
    top = _top(totals)
    out = _frame(title, top, labels, unit)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    width = plot_w / max(count, 1)
    for i in range(count):
        base = 0.0
        for colour, (name, values) in zip(colours, series.items()):
            if values[i] <= 0:
                continue
            h = plot_h * values[i] / top
            y = TOP + plot_h - plot_h * base / top - h
            out.append(f'<rect x="{LEFT + i * width + width * 0.1:.1f}" y="{y:.1f}" width="{width * 0.8:.1f}" '
                       f'height="{h:.1f}" fill="{colour}"><title>{escape(labels[i])}: {escape(name)} '
                       f'{escape(_number(values[i]))}{escape(unit)}</title></rect>')
            base += values[i]
    out.append("</svg>")
    return "".join(out) + _legend(list(series), colours)


def lines(title: str, labels: list[str], series: dict[str, list[float | None]], unit: str = "") -> str:
    """A line per series; ``None`` breaks a line."""
    finite = [v for values in series.values() for v in values if v is not None and v != float("inf")]
    top = _top(finite)
    out = _frame(title, top, labels, unit)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    for colour, (name, values) in zip(COLOURS, series.items()):
        runs: list[list[str]] = [[]]
        for i, value in enumerate(values):
            if value is None:
                runs.append([])
                continue
            shown = min(value, top)
            x = LEFT + plot_w * (i + 0.5) / len(values)
            y = TOP + plot_h * (1 - shown / top)
            runs[-1].append(f"{x:.1f},{y:.1f}")
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"><title>{escape(labels[i])}: '
                       f'{escape(name)} {"over " if value == float("inf") else ""}{escape(_number(shown))}'
                       f'{escape(unit)}</title></circle>')
        for run in runs:
            if len(run) > 1:
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(run)}"/>')
    out.append("</svg>")
    return "".join(out) + _legend(list(series))


def _legend(names: list[str], colours: tuple[str, ...] = COLOURS) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{colour}"></i>{escape(name)}</span>' for colour, name in zip(colours, names)
    ) + "</div>"
