"""SVG figures of the report, drawn from numbers only.

The coverage map (one lane per category, the work from its first word to its last) and the
p_z histogram are inline SVG. Nothing from a model's output or a case file enters an SVG: every
element name, attribute name and colour comes from the fixed sets below, every coordinate is a
number formatted here, and every id is made by :class:`FigureIds` from a counter. Labels, axis
words and figures in words are HTML around the SVG (autoescaped by Jinja like everything else).
:func:`check_svg` states the rule the security tests apply to every ``<svg>`` of a report.

The categories survive greyscale printing by pattern, not colour: extraction is hatched,
regurgitation solid black, reconstruction solid mid-grey; every drawn passage is at least
:data:`MIN_PASSAGE` wide so that a one-word span of a novel stays visible.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

log = logging.getLogger(__name__)

SVG_NS = "http://www.w3.org/2000/svg"

#: Elements a report's SVG may hold.
ALLOWED_ELEMENTS = frozenset({"svg", "defs", "pattern", "g", "rect", "line", "path"})
#: Attributes a report's SVG may carry (no href, no style, no event handler, no text).
ALLOWED_ATTRIBUTES = frozenset({
    "xmlns", "class", "width", "height", "viewBox", "preserveAspectRatio", "role",
    "aria-hidden", "focusable", "id", "x", "y", "x1", "y1", "x2", "y2", "d", "fill", "stroke",
    "stroke-width", "patternUnits", "shape-rendering",
})
#: Paint values: fixed greys and references to a pattern of the same figure.
ALLOWED_PAINTS = frozenset({"none", "#000000", "#1a1a1a", "#4d4d4d", "#8c8c8c", "#b3b3b3",
                            "#d9d9d9", "#ffffff"})
_ID_RE = re.compile(r"fig\d+-[a-z]+")
_NUMBER_RE = re.compile(r"-?\d+(\.\d+)?(mm)?")
_PATH_RE = re.compile(r"[MLHVZ0-9., -]+")
_FIXED_VALUES = {
    "xmlns": {SVG_NS},
    "class": {"figure", "swatch-fig"},
    "preserveAspectRatio": {"none"},
    "role": {"img"},
    "aria-hidden": {"true"},
    "focusable": {"false"},
    "patternUnits": {"userSpaceOnUse"},
    "shape-rendering": {"crispEdges"},
}

#: Figure width in millimetres (the content box is 170 mm; labels take the rest).
LANE_WIDTH_MM = 136
LANE_HEIGHT_MM = 6
#: Drawing units per millimetre (the viewBox is in tenths of a millimetre).
UNITS = 10
#: The bin of the coverage map, in drawing units (0.3 mm, about a printed dot of a 100 dpi
#: rendering): a passage narrower than a bin is drawn as the share of the bin it covers.
MIN_PASSAGE = 3
HIST_WIDTH_MM = 140
HIST_HEIGHT_MM = 32


@dataclass(frozen=True)
class Paint:
    """How one category is drawn: a solid grey, or hatching of black lines on white."""

    fill: str
    hatch: bool = False


#: Category -> paint. Distinct in greyscale: hatched, black, mid-grey.
CATEGORY_PAINT = {
    "extraction": Paint(fill="#ffffff", hatch=True),
    "regurgitation": Paint(fill="#1a1a1a"),
    "reconstruction": Paint(fill="#8c8c8c"),
}
HIST_PAINT = Paint(fill="#4d4d4d")


class FigureIds:
    """Document-unique ids for the patterns of the figures (``fig1-hatch``, ...): made from a
    counter, so the same report gives the same ids."""

    def __init__(self) -> None:
        self._n = 0

    def next(self, name: str) -> str:
        if not re.fullmatch(r"[a-z]+", name):
            raise ValueError(f"figure id names are lower-case letters: {name!r}")
        self._n += 1
        return f"fig{self._n}-{name}"


def _num(x: float) -> str:
    """A coordinate: at most two decimals, no exponent, no negative zero."""
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _el(name: str, children: Sequence[str] = (), **attrs: str | float) -> str:
    if name not in ALLOWED_ELEMENTS:
        raise ValueError(f"SVG element {name!r} is not allowed")
    parts = [name]
    for key, value in attrs.items():
        attr = key.replace("_", "-") if key not in ("viewBox", "patternUnits",
                                                    "preserveAspectRatio") else key
        if attr not in ALLOWED_ATTRIBUTES:
            raise ValueError(f"SVG attribute {attr!r} is not allowed")
        text = _num(value) if isinstance(value, (int, float)) else value
        if not _value_ok(attr, text, None):
            raise ValueError(f"SVG attribute {attr}={text!r} is not allowed")
        parts.append(f'{attr}="{text}"')
    head = " ".join(parts)
    if not children:
        return f"<{head}/>"
    return f"<{head}>" + "".join(children) + f"</{name}>"


def _value_ok(attr: str, value: str, ids: set[str] | None) -> bool:
    """Whether ``value`` may stand in ``attr`` (``ids``: the figure's pattern ids, or None to
    accept any well-formed id while building)."""
    if attr in _FIXED_VALUES:
        return value in _FIXED_VALUES[attr]
    if attr in ("fill", "stroke"):
        if value in ALLOWED_PAINTS:
            return True
        m = re.fullmatch(r"url\(#(fig\d+-[a-z]+)\)", value)
        return m is not None and (ids is None or m.group(1) in ids)
    if attr == "id":
        return _ID_RE.fullmatch(value) is not None
    if attr == "d":
        return _PATH_RE.fullmatch(value) is not None
    if attr == "viewBox":
        return all(_NUMBER_RE.fullmatch(v) for v in value.split(" ")) and value.count(" ") == 3
    return _NUMBER_RE.fullmatch(value) is not None


def _svg(width_mm: float, height_mm: float, body: Sequence[str], css: str = "figure") -> Markup:
    w, h = width_mm * UNITS, height_mm * UNITS
    svg = _el("svg", body, xmlns=SVG_NS, **{"class": css}, width=f"{_num(width_mm)}mm",
              height=f"{_num(height_mm)}mm", viewBox=f"0 0 {_num(w)} {_num(h)}",
              preserveAspectRatio="none", role="img", aria_hidden="true", focusable="false")
    check_svg(svg)
    # Built above from numbers and the fixed sets only, and checked: safe to inline.
    return Markup(svg)  # noqa: S704


def _hatch(ids: FigureIds, paint: Paint) -> tuple[list[str], str]:
    """(defs, fill) for a paint: a hatching pattern, or the solid grey."""
    if not paint.hatch:
        return [], paint.fill
    pid = ids.next("hatch")
    s = 12  # 1.2 mm between lines, 45 degrees
    pattern = _el("pattern", [
        _el("rect", x=0, y=0, width=s, height=s, fill=paint.fill),
        _el("path", d=f"M-3,3 L3,-3 M0,{s} L{s},0 M{s - 3},{s + 3} L{s + 3},{s - 3}",
            stroke="#000000", stroke_width=2.6),
    ], id=pid, patternUnits="userSpaceOnUse", x=0, y=0, width=s, height=s)
    return [_el("defs", [pattern])], f"url(#{pid})"


def merge_ranges(ranges: Iterable[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """The union of word ranges [start, end), clipped to [0, total), as sorted disjoint runs."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted((max(0, a), min(total, b)) for a, b in ranges):
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def passage_rects(runs: Sequence[tuple[int, int]], total: int,
                  width: float = LANE_WIDTH_MM * UNITS) -> list[tuple[float, float, float]]:
    """(x, width, share) in drawing units of what to draw for the covered words, at their
    true width: a run at least one bin (MIN_PASSAGE) wide is drawn exactly (share 1); runs
    narrower than a bin are summed per bin and the bin is drawn with ``share`` = the part
    of it they cover (the bar's height is that share of the lane), so that many short
    passages never look like solid coverage."""
    out: list[tuple[float, float, float]] = []
    partial: dict[int, float] = {}
    for lo, hi in runs:
        x0, x1 = lo / total * width, hi / total * width
        if x1 - x0 >= MIN_PASSAGE:
            out.append((round(x0, 2), round(x1 - x0, 2), 1.0))
            continue
        b = int(x0 // MIN_PASSAGE)
        while x0 < x1:
            end = min(x1, (b + 1) * MIN_PASSAGE)
            partial[b] = partial.get(b, 0.0) + end - x0
            x0, b = end, b + 1
    for b in sorted(partial):
        x = min(b * MIN_PASSAGE, width - MIN_PASSAGE)
        out.append((round(x, 2), float(MIN_PASSAGE), round(min(1.0, partial[b] / MIN_PASSAGE), 4)))
    return sorted(out)


#: The lowest bar drawn for a bin with a little coverage (0.1 mm): visible, nearly no ink.
MIN_BAR_HEIGHT = 1.0


def coverage_lane(ids: FigureIds, category: str, runs: Sequence[tuple[int, int]],
                  total: int) -> Markup:
    """One lane of the coverage map: the work as a frame, each covered run a filled bar at
    its true width (a bin partly covered by short passages: a bar as high as the share)."""
    w, h = LANE_WIDTH_MM * UNITS, LANE_HEIGHT_MM * UNITS
    defs, fill = _hatch(ids, CATEGORY_PAINT[category])
    body = list(defs)
    body.append(_el("rect", x=0.5, y=0.5, width=w - 1, height=h - 1, fill="#ffffff",
                    stroke="#000000", stroke_width=1))
    inner = h - 12
    bars = []
    for x, bw, share in (passage_rects(runs, total) if total else []):
        if share >= 1.0:
            bars.append(_el("rect", x=x, y=6, width=bw, height=inner, fill=fill,
                            stroke="#000000", stroke_width=0.8))
        else:
            bh = max(MIN_BAR_HEIGHT, round(inner * share, 2))
            bars.append(_el("rect", x=x, y=round(6 + inner - bh, 2), width=bw, height=bh,
                            fill="#000000" if category != "reconstruction" else fill))
    if bars:
        body.append(_el("g", bars))
    return _svg(LANE_WIDTH_MM, LANE_HEIGHT_MM, body)


def coverage_axis(tenths: int = 10) -> Markup:
    """Ticks under the lanes at every tenth of the work (longer at the ends and the middle)."""
    w, h = LANE_WIDTH_MM * UNITS, 2.5 * UNITS
    lines = [_el("line", x1=0, y1=0.5, x2=w, y2=0.5, stroke="#000000", stroke_width=1)]
    for i in range(tenths + 1):
        x = min(max(0.5, i * w / tenths), w - 0.5)
        long = i in (0, tenths // 2, tenths)
        lines.append(_el("line", x1=x, y1=0, x2=x, y2=h if long else h * 0.55,
                         stroke="#000000", stroke_width=1))
    return _svg(LANE_WIDTH_MM, 2.5, [_el("g", lines)])


def swatch(ids: FigureIds, category: str) -> Markup:
    """The legend's sample of a category's paint (6 x 3 mm)."""
    defs, fill = _hatch(ids, CATEGORY_PAINT[category])
    body = [*defs, _el("rect", x=0.5, y=0.5, width=59, height=29, fill=fill, stroke="#000000",
                       stroke_width=1)]
    return _svg(6, 3, body, css="swatch-fig")


def histogram(shares: Sequence[float]) -> Markup:
    """Vertical bars, one per bin in order, height = share of windows (0..1), with gridlines
    at 25 %, 50 %, 75 % and 100 %. Bin labels and counts are the HTML table under it, whose
    columns the bars line up with (same width, equal columns)."""
    w, h = HIST_WIDTH_MM * UNITS, HIST_HEIGHT_MM * UNITS
    n = max(1, len(shares))
    col = w / n
    top = 10.0  # room above the 100 % line
    plot = h - top
    grid = [_el("line", x1=0, y1=top + plot * (1 - q), x2=w, y2=top + plot * (1 - q),
                stroke="#b3b3b3", stroke_width=1) for q in (0.25, 0.5, 0.75, 1.0)]
    bars = []
    for i, s in enumerate(shares):
        s = min(1.0, max(0.0, s))
        if s <= 0:
            continue
        bh = max(plot * s, 3.0)  # a non-empty bin is never invisible
        bars.append(_el("rect", x=i * col + col * 0.2, y=h - bh, width=col * 0.6, height=bh,
                        fill=HIST_PAINT.fill, stroke="#000000", stroke_width=1))
    body = [_el("g", grid)]
    if bars:
        body.append(_el("g", bars))
    body.append(_el("line", x1=0, y1=h - 0.5, x2=w, y2=h - 0.5, stroke="#000000",
                    stroke_width=1.2))
    return _svg(HIST_WIDTH_MM, HIST_HEIGHT_MM, body)


class SvgRejected(ValueError):
    """An ``<svg>`` that is not one of the report's own figures."""


def check_svg(svg: str) -> None:
    """Raise :class:`SvgRejected` unless ``svg`` is one of our figures: only the allowed
    elements and attributes, fixed paints or references to a pattern defined in the same
    figure, numeric geometry, no text at all."""
    try:
        root = ET.fromstring(svg)  # noqa: S314 - our own string, and ET resolves no entities
    except ET.ParseError as exc:
        raise SvgRejected(f"not well-formed: {exc}") from exc
    if root.tag != f"{{{SVG_NS}}}svg":
        raise SvgRejected(f"root is {root.tag!r}, not an svg element")
    ids = {e.get("id", "") for e in root.iter(f"{{{SVG_NS}}}pattern")}
    for e in root.iter():
        if not e.tag.startswith(f"{{{SVG_NS}}}"):
            raise SvgRejected(f"element {e.tag!r} outside the SVG namespace")
        name = e.tag.split("}", 1)[1]
        if name not in ALLOWED_ELEMENTS:
            raise SvgRejected(f"element {name!r} is not allowed")
        if (e.text or "").strip() or (e.tail or "").strip():
            raise SvgRejected(f"text inside <{name}>")
        for attr, value in e.attrib.items():
            if attr not in ALLOWED_ATTRIBUTES:
                raise SvgRejected(f"attribute {attr!r} on <{name}> is not allowed")
            if not _value_ok(attr, value, ids):
                raise SvgRejected(f"value {value!r} of {attr} on <{name}> is not allowed")
