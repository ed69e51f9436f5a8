"""One self-contained HTML page that shows an evaluation: what ran, the figures, the confusions
down to the songs in each cell, the misclassified songs to listen to, and maps of the songs.

The page is a single file a researcher can open anywhere, mail or archive: no network access,
no external files, no JavaScript; CSS is inline, charts are inline SVG, audio excerpts are
``data:`` URIs (:mod:`genre_jax.excerpts`). Every piece of text that comes from the page dict
is HTML-escaped, and the element ids are derived from it (:class:`_Anchors`), never copied.

The page dict (built by evaluate, crossval and compare; only ``title`` and ``kind`` are
required, every other key defaults to empty)::

    {
      "title": str,
      "kind": "evaluate" | "crossval" | "compare",
      "summary": str | None,          # the one-line verdict under the title; when absent or
                                      # None, each confusion matrix's accuracy (trace / total)
      "ran": [str, ...],              # paragraphs of plain text: what ran, data, protocol
      "tables": [{"id": str, "title": str, "columns": [str],
                  "rows": [[str | int | float | None]], "note": str | None}],
      "genres": [str],                # the axes of every confusion matrix and probability chart
      "confusions": [{"id": str, "title": str,
                      "counts": [[int]],       # rows = true genre, columns = predicted
                      "cells": {"i,j": [song_id, ...]}}],   # the songs counted in cell (i, j)
      "songs": {song_id: {"name": str, "genre": str,      # the true genre
                          "audio": "data:audio/...;base64,..." | None,
                          "audio_note": str | None,       # shown where there is no audio
                          "verdicts": [{"model": str, "predicted": str, "correct": bool,
                                        "probabilities": [float per genre] | None}]}},
      "errors": {"title": str, "songs": [song_id, ...], "note": str | None},
      "maps": [{"title": str, "method": str,              # axes are "<method> 1", "<method> 2"
                "points": [{"x": float, "y": float, "genre": str, "error": bool,
                            "song": song_id}]}],
    }

A song id may hold any character. Cell ``"i,j"`` lists may repeat a song (segment-level
matrices count each segment): the page shows each song once with its count. A song name links
to the song's entry in the error list where it has one. A page dict that contradicts itself (a
matrix not ``len(genres)`` square, a row longer than its table's columns, an error listed
without its song, audio that is not a ``data:audio/`` URI) is refused with a ``ValueError``
that says where.

The page's parts stay one module (about 480 lines, a third of it this description, the style
sheet and the palette): they share the anchors and the escaping, and read in the page's order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from genre_jax.fileio import atomic_write_bytes

KINDS = ("evaluate", "crossval", "compare")

# One colour per genre, in the order of ``page["genres"]``: matplotlib's tab10, then the dark
# half of d3's category20b and more; past 20 genres the palette repeats.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
    "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
)  # fmt: skip
_OTHER_COLOUR = "#555555"
# shades of the confusion cells: correct (diagonal) in blue, confusions in red
_DIAGONAL_RGB = (31, 119, 180)
_OFF_DIAGONAL_RGB = (214, 39, 40)
# probability bars: the true genre, a wrong prediction, the rest
_TRUE_BAR, _WRONG_BAR, _OTHER_BAR = "#2ca02c", "#d62728", "#b0b7bf"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;
 max-width:1240px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ccd;
 padding-bottom:3px}h3{font-size:15px;margin:16px 0 6px}
.verdict{font-size:16px;font-weight:600;margin:4px 0}.kind{color:#59636e;margin:0 0 8px}
nav a{margin-right:14px}a{color:#0b5cad}
table{border-collapse:collapse;margin:4px 0 6px}th,td{border:1px solid #d5d9de;padding:3px 7px}
th{background:#f1f3f5;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#59636e;font-size:13px;margin:2px 0 10px}figure{margin:10px 0 18px}
table.confusion td{text-align:center;min-width:34px;font-variant-numeric:tabular-nums}
table.confusion td a{color:inherit;display:block;text-decoration:none;font-weight:600}
table.confusion td.zero{color:#b0b7bf}table.confusion th.corner{font-weight:400;font-size:12px}
.cell-lists{columns:3 320px;column-gap:24px;font-size:13px}
.cell-lists section{break-inside:avoid;margin:0 0 8px}.cell-lists h4{margin:0;font-size:13px}
.cell-lists ul{margin:2px 0 0;padding-left:18px}
#errors .songs{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:10px}
article.song{border:1px solid #d5d9de;border-radius:6px;padding:8px 10px}
article.song h3{margin:0 0 2px;overflow-wrap:anywhere}article.song:target{outline:3px solid #f0b400}
.verdicts{list-style:none;padding:0;margin:4px 0}.verdicts li{margin:3px 0}
.right .mark{color:#1a7f37}.wrong .mark{color:#c4261d}.model{font-weight:600}
audio{width:100%;height:32px;margin-top:4px}.audio-note{color:#59636e;font-style:italic}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px}
.cell-lists section:target{background:#fff6d6}
@media print{nav,audio{display:none}body{font-size:10pt;max-width:none;padding:0}
 article.song,table,figure{break-inside:avoid}a{color:inherit;text-decoration:none}}
"""


class _Anchors:
    """HTML ids derived from arbitrary keys: ``<prefix>-<slug>-<8 hex of a hash>``, made of
    ASCII letters, digits and hyphens only, the same for the same key within a page, and
    unique (a second key with the same id gets ``-2``, ``-3``...)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._used: set[str] = set()

    def __call__(self, prefix: str, key: str) -> str:
        if (prefix, key) in self._ids:
            return self._ids[(prefix, key)]
        slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")[:40].strip("-")
        digest = hashlib.blake2s(key.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
        base = f"{prefix}-{slug}-{digest}" if slug else f"{prefix}-{digest}"
        anchor, suffix = base, 2
        while anchor in self._used:
            anchor, suffix = f"{base}-{suffix}", suffix + 1
        self._ids[(prefix, key)] = anchor
        self._used.add(anchor)
        return anchor


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every part of one page needs: the (normalised) page dict, its anchors, and the songs
    of the error list, which names elsewhere link to."""

    page: dict[str, Any]
    anchors: _Anchors
    linked: frozenset[str]


def _e(value: Any) -> str:
    """``value`` as text, escaped for HTML content and quoted attributes."""
    return escape(str(value), quote=True)


def _number(value: Any) -> str:
    """A table cell's text: ``None`` as an em dash, floats to 4 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—" if math.isnan(value) else str(value)
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _table(table: dict[str, Any], anchors: _Anchors) -> str:
    """A results table (summary, per genre, pairwise tests...) with its title and note."""
    columns = list(table["columns"])
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for n, row in enumerate(table["rows"]):
        if len(row) != len(columns):
            raise ValueError(
                f"table {table['id']!r}, row {n}: {len(row)} values for {len(columns)} columns"
            )
        cells = "".join(
            f'<td class="num">{_e(_number(v))}</td>'
            if _is_number(v)
            else f"<td>{_e(_number(v))}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    note = f'<p class="note">{_e(table["note"])}</p>' if table.get("note") else ""
    return (
        f'<section class="table" id="{anchors("table", str(table["id"]))}">'
        f"<h3>{_e(table['title'])}</h3><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{note}</section>"
    )


def _cell_key(key: str, size: int, matrix: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", key)
    if not match or max(int(match[1]), int(match[2])) >= size:
        raise ValueError(f"confusion {matrix!r}: cell key {key!r} is not 'i,j' with i, j < {size}")
    return int(match[1]), int(match[2])


def _shade(fraction: float, diagonal: bool) -> str:
    """Inline style of a confusion cell holding ``fraction`` of its row."""
    red, green, blue = _DIAGONAL_RGB if diagonal else _OFF_DIAGONAL_RGB
    text = "#fff" if fraction > 0.55 else "#1b1f24"
    return f"background:rgba({red},{green},{blue},{0.9 * fraction:.3f});color:{text}"


def _song_name(song_id: str, page: dict[str, Any]) -> str:
    """A song's name as the page shows it (its id where the page has no entry for it)."""
    return str(page["songs"].get(song_id, {}).get("name", song_id))


def _cell_list(
    title: str, anchor: str, songs: Sequence[str], diagonal: bool, context: _Context
) -> str:
    """The section a confusion cell links to: the songs counted in the cell, each once with
    its count when above 1; off the diagonal, a name links to the song's entry in the error
    list where it has one."""
    counted = Counter(songs)
    items = []
    for song, count in counted.items():
        name = _e(_song_name(song, context.page))
        if not diagonal and song in context.linked:
            name = f'<a href="#{context.anchors("song", song)}">{name}</a>'
        items.append(f"<li>{name}{f' ×{count}' if count > 1 else ''}</li>")
    listed = f"<ul>{''.join(items)}</ul>" if items else '<p class="note">songs not listed</p>'
    return f'<section class="cell" id="{anchor}"><h4>{title}</h4>{listed}</section>'


def _checked_counts(matrix: dict[str, Any], size: int) -> tuple[list[list[int]], dict]:
    """The matrix's counts and its cells keyed by ``(i, j)``, checked against each other."""
    name = str(matrix["id"])
    counts = [[int(c) for c in row] for row in matrix["counts"]]
    if len(counts) != size or any(len(row) != size for row in counts):
        raise ValueError(f"confusion {name!r}: counts must be {size} x {size}")
    cells = {_cell_key(k, size, name): list(v) for k, v in matrix.get("cells", {}).items()}
    for (i, j), songs in cells.items():
        if songs and counts[i][j] == 0:
            raise ValueError(f"confusion {name!r}: cell {i},{j} lists songs but counts 0")
    return counts, cells


def _confusion(matrix: dict[str, Any], context: _Context) -> str:
    """A confusion matrix as a table whose non-zero counts link to the lists of their songs."""
    genres = context.page["genres"]
    counts, cells = _checked_counts(matrix, len(genres))
    base = context.anchors("confusion", str(matrix["id"]))
    header = "".join(f'<th scope="col">{_e(g)}</th>' for g in genres)
    rows, lists = [], []
    for i, true in enumerate(genres):
        total, tds = sum(counts[i]), []
        for j, predicted in enumerate(genres):
            count = counts[i][j]
            data = f'data-true="{_e(true)}" data-predicted="{_e(predicted)}" data-count="{count}"'
            if count == 0:
                tds.append(f'<td class="zero" {data}>0</td>')
                continue
            anchor = f"cell-{base}-{i}-{j}"
            style = _shade(count / total, i == j)
            tds.append(f'<td {data} style="{style}"><a href="#{anchor}">{count}</a></td>')
            title = f"true {_e(true)}, predicted {_e(predicted)}: {count}"
            lists.append(_cell_list(title, anchor, cells.get((i, j), []), i == j, context))
        rows.append(
            f'<tr><th scope="row">{_e(true)}</th>{"".join(tds)}<td class="num">{total}</td></tr>'
        )
    return (
        f'<figure id="{base}"><h3>{_e(matrix["title"])}</h3><table class="confusion">'
        f'<thead><tr><th class="corner">true ↓ predicted →</th>{header}<th>n</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table><div class="cell-lists">{"".join(lists)}</div>'
        "</figure>"
    )


def _bars_svg(
    probabilities: Sequence[float], genres: Sequence[str], true: str, predicted: str
) -> str:
    """A small horizontal bar chart of one prediction's probabilities, the true genre in green
    and a wrong prediction in red, with the numbers as text and in the tooltip."""
    row, label_w, bar_w, text_w = 13, 74, 150, 40
    width, height = label_w + bar_w + text_w, row * len(genres) + 2
    numbers = ", ".join(f"{g} {p:.2f}" for g, p in zip(genres, probabilities, strict=True))
    parts = [
        f'<svg class="bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="probabilities: {_e(numbers)}"><title>{_e(numbers)}</title>'
    ]
    for n, (genre, p) in enumerate(zip(genres, probabilities, strict=True)):
        y = n * row + 1
        colour = _TRUE_BAR if genre == true else _WRONG_BAR if genre == predicted else _OTHER_BAR
        weight = ' font-weight="700"' if genre in (true, predicted) else ""
        length = max(0.0, min(1.0, float(p))) * bar_w
        parts.append(
            f'<text x="{label_w - 4}" y="{y + 10}" font-size="11" text-anchor="end"{weight}>'
            f"{_e(genre)}</text>"
            f'<rect x="{label_w}" y="{y + 1}" width="{length:.1f}" height="{row - 3}" '
            f'fill="{colour}"><title>{_e(genre)}: {p:.3f}</title></rect>'
            f'<text x="{label_w + bar_w + 4}" y="{y + 10}" font-size="11">{p:.2f}</text>'
        )
    return "".join(parts) + "</svg>"


def _verdict_item(verdict: dict[str, Any], song: dict[str, Any], genres: Sequence[str]) -> str:
    right = bool(verdict["correct"])
    mark = "✓ right" if right else "✗ wrong"
    bars = ""
    if verdict.get("probabilities") is not None:
        if len(verdict["probabilities"]) != len(genres):
            raise ValueError(
                f"song {song['name']!r}, model {verdict['model']!r}: "
                f"{len(verdict['probabilities'])} probabilities for {len(genres)} genres"
            )
        bars = "<br>" + _bars_svg(
            verdict["probabilities"], genres, song["genre"], verdict["predicted"]
        )
    return (
        f'<li class="{"right" if right else "wrong"}"><span class="model">{_e(verdict["model"])}'
        f'</span>: predicted <b>{_e(verdict["predicted"])}</b> <span class="mark">{mark}</span>'
        f"{bars}</li>"
    )


def _audio(song_id: str, song: dict[str, Any]) -> str:
    """The song's player, or the note that says why there is none."""
    source = song.get("audio")
    if source is None:
        return f'<p class="audio-note">{_e(song.get("audio_note") or "no audio excerpt")}</p>'
    if not re.match(r"data:audio/[\w.+-]+(;[\w=.+-]+)*;base64,[A-Za-z0-9+/=]*\Z", source):
        raise ValueError(f"song {song_id!r}: audio must be a base64 data:audio/ URI")
    return f'<audio controls preload="metadata" src="{source}"></audio>'


def _song_article(song_id: str, context: _Context) -> str:
    """One entry of the error list: the song, each model's verdict and chart, the excerpt."""
    page = context.page
    if song_id not in page["songs"]:
        raise ValueError(f"errors list song {song_id!r}, which is not in songs")
    song = page["songs"][song_id]
    verdicts = "".join(_verdict_item(v, song, page["genres"]) for v in song.get("verdicts", []))
    return (
        f'<article class="song" id="{context.anchors("song", song_id)}"><h3>{_e(song["name"])}</h3>'
        f'<div>true genre: <b>{_e(song["genre"])}</b></div><ul class="verdicts">{verdicts}</ul>'
        f"{_audio(song_id, song)}</article>"
    )


def _colours(genres: Sequence[str]) -> dict[str, str]:
    return {g: PALETTE[n % len(PALETTE)] for n, g in enumerate(genres)}


def _scale(values: Iterable[float], low: float, high: float) -> Any:
    """The affine map of ``values``' range (padded by 4 %) onto ``[low, high]``."""
    values = list(values)
    start, stop = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (stop - start) * 0.04 or 1.0
    start, stop = start - pad, stop + pad
    return lambda v: low + (v - start) / (stop - start) * (high - low)


def _point(point: dict[str, Any], x: float, y: float, colour: str, context: _Context) -> str:
    """One song on a map: a filled dot, or a hollow ring when misclassified (a link to the
    song's entry in the error list where it has one), with a tooltip naming the song."""
    song = point["song"]
    error = bool(point["error"])
    tip = f"{_song_name(song, context.page)} (true {point['genre']}"
    tip += ", misclassified)" if error else ")"
    if error:
        shape = f'r="5" fill="#fff" fill-opacity="0.6" stroke="{colour}" stroke-width="2"'
    else:
        shape = f'r="3.5" fill="{colour}" fill-opacity="0.85"'
    mark = f'<circle cx="{x:.1f}" cy="{y:.1f}" {shape}><title>{_e(tip)}</title></circle>'
    if song in context.linked:
        return f'<a href="#{context.anchors("song", song)}">{mark}</a>'
    return mark


def _legend(colours: dict[str, str]) -> str:
    """The map's key: each genre's colour, and the misclassified songs' ring."""
    dot = '<svg width="12" height="12"><circle cx="6" cy="6" r="5" fill="{}"/></svg>'
    items = [f"<li>{dot.format(c)} {_e(g)}</li>" for g, c in colours.items()]
    items.append(
        '<li><svg width="12" height="12"><circle cx="6" cy="6" r="4.5" fill="#fff" '
        'stroke="#333" stroke-width="2"/></svg> misclassified</li>'
    )
    return f'<ul class="legend">{"".join(items)}</ul>'


def _map_svg(chart: dict[str, Any], context: _Context) -> str:
    """A scatter of songs in two dimensions, one colour per genre, misclassified songs as
    hollow rings drawn on top, each point with a tooltip naming its song."""
    width, height, left, bottom, top, right = 640, 440, 44, 40, 10, 10
    points = list(chart["points"])
    for point in points:
        if not (math.isfinite(point["x"]) and math.isfinite(point["y"])):
            raise ValueError(f"map {chart['title']!r}: song {point['song']!r} has no coordinates")
    to_x = _scale((p["x"] for p in points), left, width - right)
    to_y = _scale((p["y"] for p in points), height - bottom, top)
    colours = _colours(context.page["genres"])
    marks = "".join(
        _point(p, to_x(p["x"]), to_y(p["y"]), colours.get(p["genre"], _OTHER_COLOUR), context)
        for p in sorted(points, key=lambda p: bool(p["error"]))  # errors on top
    )
    method, middle_y = _e(chart["method"]), (top + height - bottom) / 2
    errors = sum(bool(p["error"]) for p in points)
    return (
        f"<figure><h3>{_e(chart['title'])}</h3>"
        f'<svg class="map" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(chart["title"])}">'
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="none" stroke="#99a"/>{marks}'
        f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle" '
        f'font-size="13">{method} 1</text><text x="16" y="{middle_y}" text-anchor="middle" '
        f'font-size="13" transform="rotate(-90 16 {middle_y})">{method} 2</text></svg>'
        f'{_legend(colours)}<p class="note">{len(points)} songs, {errors} misclassified '
        "(rings; hover for the song, click a ring for its entry)</p></figure>"
    )


def _summary(page: dict[str, Any]) -> str:
    """The verdict line: the page's own, else each confusion matrix's accuracy."""
    if page.get("summary"):
        return str(page["summary"])
    parts = []
    for matrix in page["confusions"]:
        counts = matrix["counts"]
        total = sum(sum(row) for row in counts)
        right = sum(counts[i][i] for i in range(len(counts)))
        share = f"{100 * right / total:.1f} %" if total else "nothing counted"
        parts.append(f"{matrix['title']}: {share} ({right} of {total})")
    return " · ".join(parts)


def _normalised(page: dict[str, Any]) -> dict[str, Any]:
    """``page`` with every optional key present and ``kind`` checked."""
    if not isinstance(page.get("title"), str):
        raise ValueError("a page needs a title (a string)")
    if page.get("kind") not in KINDS:
        raise ValueError(f"kind={page.get('kind')!r}: must be one of {', '.join(KINDS)}")
    defaults = {"ran": [], "tables": [], "genres": [], "confusions": [], "songs": {}, "maps": []}
    full = {**defaults, **{k: v for k, v in page.items() if v is not None}}
    full["errors"] = {"title": "Misclassified songs", "songs": [], **(page.get("errors") or {})}
    return full


def render_page(page: dict[str, Any]) -> str:
    """The report page of ``page`` (schema in the module docstring) as one HTML5 document.

    Raises:
        ValueError: a missing or unknown ``kind``, or a page dict that contradicts itself (the
            message says which table, matrix, song or map).
    """
    page = _normalised(page)
    anchors = _Anchors()
    context = _Context(page, anchors, frozenset(page["errors"]["songs"]))
    sections = []
    if page["ran"]:
        sections.append(("ran", "What ran", "".join(f"<p>{_e(p)}</p>" for p in page["ran"])))
    if page["tables"]:
        tables = "".join(_table(t, anchors) for t in page["tables"])
        sections.append(("tables", "Results", tables))
    if page["confusions"]:
        intro = (
            '<p class="note">Rows are the true genre, columns the predicted one; shading is the '
            "share of the row (blue: right, red: confused). A count links to its songs.</p>"
        )
        matrices = "".join(_confusion(m, context) for m in page["confusions"])
        sections.append(("confusions", "Confusion matrices", intro + matrices))
    errors = page["errors"]
    articles = "".join(_song_article(s, context) for s in dict.fromkeys(errors["songs"]))
    note = f'<p class="note">{_e(errors["note"])}</p>' if errors.get("note") else ""
    body = f'<div class="songs">{articles}</div>' if articles else "<p>No misclassified songs.</p>"
    sections.append(("errors", str(errors["title"]), note + body))
    if page["maps"]:
        maps = "".join(_map_svg(m, context) for m in page["maps"])
        sections.append(("maps", "Maps of the songs", maps))
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _ in sections)
    content = "".join(
        f'<section id="{sid}"><h2>{_e(title)}</h2>{html}</section>' for sid, title, html in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(page['title'])}</title><style>{_CSS}</style></head><body>"
        f'<header id="summary"><h1>{_e(page["title"])}</h1>'
        f'<p class="verdict">{_e(_summary(page) or "nothing was evaluated")}</p>'
        f'<p class="kind">{_e(page["kind"])} report, written by genre_jax</p>'
        f"<nav>{nav}</nav></header>{content}</body></html>\n"
    )


def write_page(path: str | os.PathLike, page: dict[str, Any]) -> None:
    """Render ``page`` and write it to ``path`` atomically (UTF-8)."""
    atomic_write_bytes(path, render_page(page).encode("utf-8"))
