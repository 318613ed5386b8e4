"""Security corpus: model outputs and case fields are hostile input.

A ledger whose outputs carry HTML and CSS injection, ``<img src="file:///etc/passwd">``,
stylesheets and ``url(...)`` pointing at a real socket listening on 127.0.0.1, a 5 MB output,
bidi overrides, NUL and other control characters and a 10,000-character unbroken token is
analyzed and reported. The report must render inert and legible: markup escaped, nothing
fetched (no file read, no connection to the socket), control characters shown by code point,
long outputs whole in the appendix of long texts up to APPENDIX_MAX_CHARS, the 5 MB one in part
there, saying which part and that the whole is in the attached ledger.
"""

from __future__ import annotations

import random
import re
import socket
import threading
import time
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import pytest
from pypdf import PdfReader

from casekit.case import case_hash_form, load_case
from casekit.ledger import Ledger
from casekit.records import (
    Decoding,
    Message,
    ModelIdentity,
    PlannedAttempt,
    RunEnd,
    RunStart,
    WorkManifest,
)
from tests.test_report import CONTROL, SUBJECT, _attempt, words_of

pytestmark = pytest.mark.slow

BIG_CHARS = 5 * 1024 * 1024
TOKEN = "Z" * 10_000


class Listener:
    """A socket on 127.0.0.1 that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 600  # bounded: never outlives the test run
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(addr)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _big_output(verbatim: str) -> str:
    """About 5 MB: numbered lines of nonsense words (under 100 characters each, so no line
    wraps in the appendix), with a verbatim passage of the work in the middle."""
    rng = random.Random(5)
    vocab = ["blorft", "quazzle", "mibbet", "trundock", "vexil", "ploomb", "snarvick",
             "oddlewhim", "grelt", "fnord"]
    lines: list[str] = []
    size = 0
    i = 0
    while size < BIG_CHARS:
        line = f"L{i:06d} " + " ".join(rng.choice(vocab) for _ in range(11))
        lines.append(line)
        size += len(line) + 1
        i += 1
        if i == 20_000:
            lines.append(verbatim)
    return "\n".join(lines)[:BIG_CHARS]


@dataclass
class Corpus:
    run_dir: Path
    case_path: Path
    findings: object
    big: str
    port: int
    outputs: dict[str, str]


def _build(root: Path, port: int) -> Corpus:
    case_dir = root / "case"
    (case_dir / "works").mkdir(parents=True)
    (case_dir / "works" / "frank.txt").write_text(SUBJECT, encoding="utf-8")
    (case_dir / "works" / "harbour.txt").write_text(CONTROL, encoding="utf-8")
    case_path = case_dir / "case.yaml"
    case_path.write_text(f"""\
case:
  id: hostile
  title: "<script>alert(1)</script> Hostile v. Corpus"
  matter: "<img src=\\"http://127.0.0.1:{port}/matter.png\\"> {{{{ 7*7 }}}}"
  examiner: "Eve </title><style>body{{display:none}}</style>"
  organization: "Lab"
works:
  - id: frank
    title: "Frankenstein <b>bold</b>"
    author: Mary Shelley
    path: works/frank.txt
    role: subject
  - id: harbour
    title: The Harbour Clerk
    author: Unpublished Control
    path: works/harbour.txt
    role: control
models:
  - id: m1
    provider: local
    model: smollm2-135m-instruct
strategies:
  - name: benign_prompts
    params:
      templates: ["Tell me about {{{{ title }}}}."]
thresholds:
  min_span_words: 20
  legal_defaults: false
""", encoding="utf-8")
    loaded = load_case(case_path)
    from casekit.works import load_works

    works = load_works(loaded)
    run_dir = case_dir / "runs" / "hostile-run"
    led = Ledger(run_dir).open()
    verbatim = [words_of(SUBJECT, k * 30, 26)[0] for k in range(6)]
    url = f"http://127.0.0.1:{port}"
    outputs = {
        "html": (f'<script>alert("x")</script><img src="file:///etc/passwd">'
                 f'<link rel=stylesheet href="{url}/x.css"><style>@import url({url}/i.css);'
                 f'body{{display:none}}</style><iframe src="{url}/f"></iframe>'
                 f'<object data="file:///etc/shadow"></object>'
                 f'<svg><image href="{url}/s.svg"/></svg> {verbatim[0]}'),
        "css": (f'<div style="background: url({url}/bg.png); position:fixed">x</div>'
                f'<p style="background-image:url(\'file:///etc/hostname\')">{verbatim[1]}</p>'
                f'<a href="javascript:alert(1)">click</a> {{{{ 7*7 }}}} {{% raw %}}'),
        "bidi": f"\u202e{verbatim[2]}\u202c and \u2066isolate\u2069 \u200f\u200b",
        "controls": f"nul\x00bell\x07esc\x1b[31mdel\x7f ls\u2028ps\u2029 cr\r {verbatim[3]}",
        "token": f"{verbatim[4]} {TOKEN} tail",
        "big": _big_output(verbatim[5]),
    }
    planned = []
    for i, (key, _) in enumerate(outputs.items()):
        planned.append(PlannedAttempt(
            id=f"a-hostile{i:013d}", ordinal=i, model_id="m1", strategy="benign_prompts",
            strategy_key="benign_prompts#0", work_id="frank", intent="benign", index=i,
            mode="chat", decoding=Decoding(seed=0), label=key,
            messages=[Message(role="user", content=f"<b>Tell</b> me <img src='{url}/p.png'> "
                                                   f"about {key}\x00.")]))
    planned.append(PlannedAttempt(
        id="a-hostilectrl00000000", ordinal=len(planned), model_id="m1",
        strategy="benign_prompts", strategy_key="benign_prompts#0", work_id="harbour",
        intent="benign", index=0, mode="chat",
        messages=[Message(role="user", content="Tell me about The Harbour Clerk.")]))
    led.append(RunStart(
        **led.base_fields(), run_id="hostile-run", case_path=str(case_path),
        case_sha256=loaded.sha256, case=case_hash_form(loaded.spec),
        works=[WorkManifest(id=w.id, title=w.spec.title, author=w.spec.author, role=w.spec.role,
                            path=w.spec.path, sha256=w.sha256, chars=len(w.raw),
                            words=len(w.tokens), excluded_chars=0) for w in works],
        models=[ModelIdentity(model_id="m1", provider="local", model="smollm2-135m-instruct",
                              interface="chat",
                              identity={"note": f"<img src='{url}/id.png'>"})],
        plan_sha256="sha256:" + "0" * 64, planned_attempts=len(planned),
        versions={"casekit": "0.1.0"}, git={}, host={"hostname": "<b>lab</b>"}, argv=[]))
    for a, text in zip(planned, [*outputs.values(), "A quiet story."], strict=True):
        _attempt(led, a, text, returned="<i>model</i>")
    led.append(RunEnd(**led.base_fields(), attempts_recorded=len(planned),
                      attempts_planned=len(planned), complete=True))
    led.close()
    from casekit.analysis.analyze import analyze_run

    return Corpus(run_dir=run_dir, case_path=case_path, findings=analyze_run(run_dir),
                  big=outputs["big"], port=port, outputs=outputs)


@dataclass
class Rendered:
    corpus: Corpus
    html: str
    pdf: Path
    fetched: list[str]
    connections: list[tuple[str, int]]
    seconds: float


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    from casekit.report import build_report
    from tests.conftest import fetches_recorded

    listener = Listener()
    try:
        with fetches_recorded() as fetched:
            t0 = time.perf_counter()
            corpus = _build(tmp_path_factory.mktemp("hostile"), listener.port)
            t1 = time.perf_counter()
            paths = build_report(corpus.run_dir, corpus.findings, exhibits_per_finding=10)  # type: ignore[arg-type]
            t2 = time.perf_counter()
    finally:
        time.sleep(0.3)
        listener.close()
    pages = len(PdfReader(paths.pdf).pages)
    print(f"\nsecurity corpus: ledger + analysis {t1 - t0:.1f}s, report (HTML + PDF, "
          f"{pages} pages) {t2 - t1:.1f}s")
    return Rendered(corpus=corpus, html=paths.html.read_text(encoding="utf-8"), pdf=paths.pdf,
                    fetched=fetched, connections=listener.connections, seconds=t2 - t1)


def test_nothing_fetched_no_connection(rendered: Rendered) -> None:
    assert rendered.fetched == []  # WeasyPrint asked for nothing at all: no file, no URL
    assert rendered.connections == []


def test_every_hostile_output_is_an_exhibit(rendered: Rendered) -> None:
    f = rendered.corpus.findings
    shown = re.findall(r'id="exhibit-(\d+)"', rendered.html)
    assert len(shown) == 6
    assert f.findings[0].exhibit_attempts  # type: ignore[attr-defined]


def test_markup_is_escaped(rendered: Rendered) -> None:
    html = rendered.html
    port = rendered.corpus.port
    body = html.split("</head>", 1)[1]
    # Our own figures are the only SVG: take each out (after checking it), then no markup
    # from the outputs may remain.
    body = _without_our_figures(body)
    for tag in ("<script", "<img", "<link", "<iframe", "<object", "<svg", "<image", "<b>",
                "<i>", "<p style", "<div style", 'href="javascript', "<a href=\"http",
                "<a href=\"file", "<foreignObject", "<use"):
        assert tag not in body, tag
    assert html.count("<style") == 1 and html.count("<title>") == 1
    # Highlights (our own spans) may cut through the text; the text itself is escaped.
    text = re.sub(r'<span class="[a-z ]+">|</span>', "", html)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text
    assert "&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in text
    assert f"&lt;link rel=stylesheet href=&#34;http://127.0.0.1:{port}/x.css&#34;&gt;" in text
    assert f"background: url(http://127.0.0.1:{port}/bg.png)" in text  # as text only
    assert "{{ 7*7 }}" in html and "{% raw %}" in html  # never evaluated
    assert "&lt;/title&gt;&lt;style&gt;body{display:none}&lt;/style&gt;" in html
    # The case's title stays text in <title> and on the cover.
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; Hostile v. Corpus" in html


def _without_our_figures(body: str) -> str:
    """``body`` with every <svg>...</svg> removed, each checked first to be one of ours:
    well-formed, only whitelisted elements and attributes, no text, no href, no url() other
    than a pattern of the same figure."""
    from casekit.report.figures import check_svg

    svgs = re.findall(r"<svg\b.*?</svg>", body, re.S)
    assert len(svgs) == body.count("<svg") > 0  # no unclosed or nested svg either
    ids = re.findall(r'\bid="([^"]*)"', "".join(svgs))
    assert len(ids) == len(set(ids))  # a pattern id used twice would paint another figure
    for svg in svgs:
        check_svg(svg)
        lowered = svg.lower()
        for bad in ("href", "script", "foreignobject", "style", "on", "<text", "http", "file:",
                    "data:", "@import"):
            assert not re.search(rf"[\s<]{bad}", lowered), bad
        assert all(u.startswith("url(#fig") for u in re.findall(r"url\([^)]*\)", svg))
    return re.sub(r"<svg\b.*?</svg>", "", body, flags=re.S)


def test_the_figures_are_ours_and_hold_no_output_text(rendered: Rendered) -> None:
    html = rendered.html
    body = html.split("</head>", 1)[1]
    rest = _without_our_figures(body)
    assert rest.count("<svg") == 0
    # The hostile output's own <svg> is in the report as text only.
    assert "&lt;svg&gt;&lt;image href=" in re.sub(r'<span class="[a-z ]+">|</span>', "", html)


@pytest.mark.parametrize("svg", [
    '<svg xmlns="http://www.w3.org/2000/svg"><image href="file:///etc/passwd"/></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
    '<svg xmlns="http://www.w3.org/2000/svg"><foreignObject/></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><rect fill="url(http://127.0.0.1/x)"/></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><rect fill="url(#fig1-nowhere)"/></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill:red"/></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><rect x="expression(1)"/></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><g>text from a model</g></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink">'
    '<rect x:href="#a"/></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><rect fill="red"/></svg>',
    '<svg><rect/></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><rect>',
])
def test_check_svg_rejects_what_is_not_ours(svg: str) -> None:
    from casekit.report.figures import SvgRejected, check_svg

    with pytest.raises(SvgRejected):
        check_svg(svg)


def test_figure_builders_refuse_unlisted_names_and_values() -> None:
    from casekit.report import figures

    with pytest.raises(ValueError):
        figures._el("image", href="x")
    with pytest.raises(ValueError):
        figures._el("rect", fill="url(http://127.0.0.1/)")
    with pytest.raises(ValueError):
        figures._el("rect", onload="1")
    with pytest.raises(ValueError):
        figures.FigureIds().next("x-1)")
    lane = figures.coverage_lane(figures.FigureIds(), "extraction", [(0, 3)], 10)
    figures.check_svg(str(lane))


def test_control_and_bidi_characters_are_shown_by_code_point(rendered: Rendered) -> None:
    html = rendered.html
    for ch in "\x00\x07\x1b\x7f\u2028\u2029\u202e\u202c\u2066\u2069\u200f\u200b\r":
        assert ch not in html, f"U+{ord(ch):04X}"
        assert f'<span class="ctl">U+{ord(ch):04X}</span>' in html, f"U+{ord(ch):04X}"
    # The PDF shows them too: the first exhibit (it quotes these characters) and the pages
    # after it, wherever the front matter ends.
    pages = PdfReader(rendered.pdf).pages
    first = next(i for i in range(min(len(pages), 80))
                 if "Exhibit E-1" in pages[i].extract_text()
                 and "Prompt as sent" in pages[i].extract_text())
    text = "".join(p.extract_text() for p in pages[first:first + 8])
    for code in ("U+202E", "U+0000", "U+001B", "U+2028"):
        assert code in text, code


def test_pdf_opens_and_long_token_wraps(rendered: Rendered) -> None:
    reader = PdfReader(rendered.pdf)
    assert len(reader.pages) > 40
    boxes = {(round(float(p.mediabox.width)), round(float(p.mediabox.height)))
             for p in reader.pages}
    # Nothing widened a page: A4, portrait or (the sample of attempts, issue 16) landscape.
    assert boxes <= {(595, 842), (842, 595)}
    joined = re.sub(r'</div>\n?<div class="text chunk">', "", rendered.html)
    assert TOKEN in joined  # whole in the appendix (split into blocks for layout only)
    # The token exceeds an exhibit column: shown in part there, whole in the appendix, and the
    # column says so.
    assert re.search(r"this column shows characters 1–6,000 of 10,\d{3}; the whole text is "
                     r"Appendix L-\d", rendered.html)


def test_the_5mb_output_is_shown_in_part_and_says_so(rendered: Rendered) -> None:
    """The appendix shows APPENDIX_MAX_CHARS of the 5 MB output from just before its first
    highlight, says so before and after, and the exhibit's column says where the whole text is
    (5 MB whole was some 1,000 pages; 10 MB exhausted memory in WeasyPrint)."""
    from casekit.report.text import APPENDIX_MAX_CHARS

    big = rendered.corpus.big
    html = rendered.html
    m = re.search(r'<div class="long-text" id="(long-\d+)">\s*<h2>Appendix (L-\d+): model '
                  r'output of <a href="#(exhibit-\d+)">[^<]*</a></h2>\s*<p class="small mono '
                  rf'hash">attempt ([^ ]+) · {len(big):,} characters', html)
    assert m is not None
    region = html[m.start():html.index(f"End of appendix {m.group(2)}.", m.start())]
    aid = m.group(4).replace("<wbr>", "")  # the heading's id may break after its "-"
    part = re.findall(r"\[casekit: shown in part: characters ([\d,]+)–([\d,]+) of "
                      rf"{len(big):,}\. The whole text is in the ledger attached to this PDF "
                      rf"\(ledger.jsonl, attempt {aid}\); its SHA-256 is above\.\]",
                      region)
    assert len(part) == 2 and part[0] == part[1], region[:2000]
    first, last = (int(x.replace(",", "")) for x in part[0])
    assert last - first + 1 == APPENDIX_MAX_CHARS and first > 1  # from near the highlight
    chunks = re.findall(r'<div class="text chunk">(.*?)</div>', region, re.S)
    assert "".join(unescape(re.sub(r"<[^>]+>", "", c)) for c in chunks) == big[first - 1:last]
    # ... and so does the PDF: every line of the part shown, in order, and the statement.
    from pypdf import PdfReader

    out = "\n".join(page.extract_text() or "" for page in PdfReader(rendered.pdf).pages)
    assert "shown in part: characters" in out
    # (Word by word: at 9 pt a line of the output may wrap, and across a page break the
    # running header and footer come between its words.)
    pos = 0
    for line in big[first - 1:last].splitlines()[1:-1]:
        if not line.startswith("L"):
            continue
        for word in line.split():
            i = out.find(word, pos)
            assert i >= 0, f"missing or out of order: {word!r} of {line[:40]!r}"
            pos = i + len(word)
    # The exhibit column says which part it shows and where the rest is.
    assert (f"of {len(big):,}; Appendix {m.group(2)} shows characters {first:,}\u2013"
            f"{last:,}, and the whole text is in the ledger attached to this PDF]") in html
    z = out.count("Z")
    assert z >= len(TOKEN) + 5000  # the 10,000-character token: part in its column, whole after
    longest = max(len(run) for run in re.findall(r"Z+", out))
    assert longest < 150  # broken across lines, never one overlong line


def test_second_wall_with_a_listening_socket(tmp_path: Path) -> None:
    """Raw markup (as if escaping failed) still fetches nothing and connects nowhere."""
    from casekit.report.render import render_pdf

    listener = Listener()
    url = f"http://127.0.0.1:{listener.port}"
    try:
        html = (f'<html><head><link rel="stylesheet" href="{url}/evil.css">'
                f"<style>@import url({url}/i.css); @font-face {{ font-family: x; "
                f"src: url({url}/f.woff); }}</style></head><body>"
                f'<img src="file:///etc/passwd"><img src="{url}/a.png">'
                f'<div style="background: url({url}/bg.png)">y</div>'
                f'<p style="font-family: x">z</p></body></html>')
        fetcher = render_pdf(html, tmp_path / "x.pdf")
        time.sleep(0.3)
    finally:
        listener.close()
    assert listener.connections == []
    assert fetcher.served == []
    assert {f"{url}/evil.css", f"{url}/i.css", "file:///etc/passwd", f"{url}/a.png",
            f"{url}/bg.png"} <= set(fetcher.refused)
