"""Charts for the report, drawn by Plotly.

Why Plotly: the chart is drawn by plotly.js in the auditor's browser as SVG (hover shows each
batch's id and exact score, and it zooms), and the Python package ships plotly.min.js itself, so
the site carries one local copy under `assets/` and works offline, with no CDN. Figures are plain
dicts serialised with `plotly.io.to_json(..., validate=False)`: building `graph_objects` validates
every property and costs ~8 ms a figure, which over 943 station pages is most of the build time;
the dicts below use only documented trace and layout keys and are checked by the browser test.

No inline script: a chart is an empty <div> plus its figure as JSON in a
`<script type="application/json">` element - data the browser never executes - which the site's
`assets/charts.js` hands to plotly.js; so the pages' Content-Security-Policy refuses every inline
script. Plotly escapes `<`, `>` and `/` in the JSON, so no value can close that element. Plotly
draws a little HTML in chart text (`<b>`, `<a href>`...): text that comes from stations (a station's
name) goes through `literal()`, which writes `<`, `>` and `&` as entities that plotly shows literally.
"""

from __future__ import annotations

import html
import shutil
from importlib import resources
from pathlib import Path

import plotly.io as pio
import polars as pl
from markupsafe import Markup, escape

PLOTLY_JS = "plotly.min.js"
CHARTS_JS = "charts.js"  # draws the page's figures (quality/report/static/charts.js)
FONT = '"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif'
COLOURS = {"completeness": "#2f6fb0", "validity": "#d0731c", "consistency": "#3a9a5b",
           "uniqueness": "#8a5cb8", "freshness": "#c23b4a"}
LEVEL_COLOURS = {"full": "#c23b4a", "masked": "#2f6fb0"}
# Line styles of the entity types in a trend chart, by the type's place in the registry (bundled
# types first, then others by name), so a type keeps its style on every station's page.
DASHES = ("solid", "dot", "dash", "dashdot", "longdash", "longdashdot")


def type_dashes(types: set[str]) -> dict[str, str]:
    from core.entity_types import load_entity_types

    registered = load_entity_types().names
    order = registered + sorted(types - set(registered))
    return {t: DASHES[order.index(t) % len(DASHES)] for t in types}
CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def install_plotly(assets_dir: Path) -> Path:
    """Copy the plotly.js bundled with the Python package, and the script that draws the figures
    with it, into the site (once per build)."""
    assets_dir.mkdir(parents=True, exist_ok=True)
    source = resources.files("plotly") / "package_data" / PLOTLY_JS
    target = assets_dir / PLOTLY_JS
    with resources.as_file(source) as path:
        if not target.exists() or target.stat().st_size != path.stat().st_size:
            shutil.copyfile(path, target)
    with resources.as_file(resources.files("quality.report") / "static" / CHARTS_JS) as path:
        shutil.copyfile(path, assets_dir / CHARTS_JS)
    return target


def literal(value) -> str:
    """Text from outside (a station's name) as plotly shows it literally: plotly reads `<b>`,
    `<a href=...>` and entities in chart text, so `<`, `>` and `&` go as entities."""
    return html.escape(str(value), quote=False)


def _layout(title: str, x_title: str, y_title: str, **extra) -> dict:
    return {
        "title": {"text": title, "x": 0, "font": {"size": 15}},
        "font": {"family": FONT, "size": 12, "color": "#223"},
        "margin": {"l": 56, "r": 16, "t": 44, "b": 56},
        "xaxis": {"title": {"text": x_title}, "automargin": True, "gridcolor": "#e6e8ee"},
        "yaxis": {"title": {"text": y_title}, "automargin": True, "gridcolor": "#e6e8ee", "zeroline": False},
        "plot_bgcolor": "#ffffff", "paper_bgcolor": "#ffffff",
        "legend": {"orientation": "h", "y": -0.25},
        **extra,
    }


def render(div_id: str, data: list[dict], layout: dict, height: int = 340) -> Markup:
    """A figure as an HTML fragment: its <div> and its JSON, drawn by the site's charts.js with the
    local plotly.js (the page loads both)."""
    figure = pio.to_json({"data": data, "layout": layout}, validate=False)
    # plotly's JSON already writes <, > and / as \u escapes; the element cannot be closed early.
    figure = figure.replace("<", "\\u003c").replace(">", "\\u003e")
    body = f'{figure[:-1]},"config":{pio.to_json(CONFIG, validate=False)},"height":{int(height)}}}'
    ident = escape(div_id)
    return Markup(f'<div id="{ident}" class="plotly-graph-div"></div>'
                  f'<script type="application/json" class="plotly-figure" data-for="{ident}">{body}</script>')


def bar(div_id: str, x: list, y: list, *, title: str, x_title: str, y_title: str, colour: str = "#2f6fb0",
        text: list | None = None, y_range: list | None = None, height: int = 340) -> Markup:
    x = [literal(v) if isinstance(v, str) else v for v in x]
    trace = {"type": "bar", "x": x, "y": y, "marker": {"color": colour}, "name": y_title}
    if text is not None:
        trace.update(text=text, textposition="auto")
    layout = _layout(title, x_title, y_title)
    if y_range is not None:
        layout["yaxis"]["range"] = y_range
    return render(div_id, [trace], layout, height)


def dimension_bars(div_id: str, averages: pl.DataFrame, *, title: str) -> Markup:
    """Average score per dimension, coloured like the station trend lines."""
    rows = averages.filter(pl.col("average").is_not_null())
    trace = {"type": "bar", "x": rows["dimension"].to_list(), "y": [round(v, 1) for v in rows["average"]],
             "marker": {"color": [COLOURS.get(d, "#555") for d in rows["dimension"]]},
             "text": [f"{v:.1f}" for v in rows["average"]], "textposition": "auto", "name": "average"}
    layout = _layout(title, "dimension", "score (0–100)")
    layout["yaxis"]["range"] = [0, 100]
    return render(div_id, [trace], layout)


def trend_chart(div_id: str, lines: list[dict], *, title: str) -> Markup:
    """One line per dimension (and entity type, when a station sends both) over its batches;
    `lines` are quality.report.model.trend rows of one station."""
    types = {line["entity_type"] for line in lines}
    several = len(types) > 1
    dash = type_dashes(types)
    data = [{
        "type": "scatter", "mode": "lines+markers",
        "name": f"{line['dimension']} · {line['entity_type']}" if several else line["dimension"],
        "x": [v.strftime("%Y-%m-%d %H:%M:%S") if v is not None else "" for v in line["at"]],
        "y": [round(v, 2) if v is not None else None for v in line["score"]],
        "text": [None if b is None else literal(b) for b in line["batch_id"]],
        "hovertemplate": "%{text}<br>%{y:.1f}<extra>%{fullData.name}</extra>",
        "line": {"color": COLOURS.get(line["dimension"], "#555"),
                 "dash": dash[line["entity_type"]]},
    } for line in lines]
    layout = _layout(literal(title), "batch (loaded at, UTC)", "score (0–100)")
    # From 10 points under the station's lowest score to 100: a drop of a few points stays visible.
    lowest = min((y for trace in data for y in trace["y"] if y is not None), default=0.0)
    layout["yaxis"]["range"] = [max(0.0, (lowest - 10) // 10 * 10), 101]
    layout["xaxis"]["type"] = "category"
    layout["xaxis"]["categoryorder"] = "category ascending"  # batch times, oldest first, across lines
    return render(div_id, data, layout, 360)


def cluster_chart(div_id: str, sizes: pl.DataFrame, *, title: str) -> Markup:
    """Entities by number of member records, one bar group per entity type (log scale: singletons
    outnumber large clusters by orders of magnitude)."""
    data = [{"type": "bar", "name": entity_type, "x": [str(v) for v in group["size"]],
             "y": group["entities"].to_list()}
            for (entity_type,), group in sizes.group_by("entity_type", maintain_order=True)]
    layout = _layout(title, "records per entity", "entities (log scale)", barmode="group")
    layout["yaxis"]["type"] = "log"
    layout["xaxis"]["type"] = "category"
    return render(div_id, data, layout)


def level_chart(div_id: str, by_level: pl.DataFrame, *, title: str) -> Markup:
    """Entities delivered per personal field, stacked by masking level."""
    data = [{"type": "bar", "name": level, "x": group["field"].to_list(), "y": group["entities"].to_list(),
             "marker": {"color": LEVEL_COLOURS.get(level, "#777")}}
            for (level,), group in by_level.group_by("level", maintain_order=True)]
    layout = _layout(title, "field", "entities delivered", barmode="stack")
    return render(div_id, data, layout)


def weekly_chart(div_id: str, trend: pl.DataFrame, *, title: str) -> Markup:
    """Correction tasks opened and closed per ISO week (quality.supervision.weekly_trend rows of
    one station or of the network), as grouped bars."""
    weeks = trend["week"].to_list()
    data = [{"type": "bar", "name": name, "x": weeks, "y": trend[name].to_list(), "marker": {"color": colour},
             "hovertemplate": "%{x}: %{y} " + name + "<extra></extra>"}
            for name, colour in (("opened", "#d0731c"), ("closed", "#3a9a5b"))]
    layout = _layout(literal(title), "ISO week", "correction tasks", barmode="group")
    layout["xaxis"]["type"] = "category"
    return render(div_id, data, layout)
