"""The CJK tokenization profile (casekit.cjk): characters for Han and Kana, words for Hangul and
Latin; chosen per work by ``language`` or detected; thresholds in characters. The texts here
were written for these tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from casekit.analysis.analyze import analyze_run, load_findings, write_findings
from casekit.analysis.matcher import WorkMatcher
from casekit.case import load_case
from casekit.cjk import detect, language_is_cjk
from casekit.errors import CaseError, WorkError
from casekit.normalize import tokenize
from casekit.run.runner import Runner
from casekit.works import CJK_CHARS_PER_WORD, load_works

ZH = ("山谷里的清晨总是很冷，河水在古老的石桥下流得很急。磨坊主的女儿把一袋袋粮食数了两遍，"
      "才肯相信那个数字，因为父亲教过她，粗心的计数也是一种偷窃。过了桥，道路穿过山毛榉林，"
      "一直通向集镇。镇上广场的钟每个小时都会响一次，商人们总在争论盐和羊毛的价格。她装好车，"
      "吹口哨唤来小狗，在篱笆上的霜还没有融化之前就出发了，心里想着要寄出的那封信，"
      "也想着她盼望收到的回音。")
ZH_CONTROL = ("灯笼铺里的铜壶嗡嗡作响，奥维尔按照黄铜螺丝反光的颜色给它们分类，这是佩林汉姆镇上"
              "没有人理解的方法。每天傍晚，他把数目写进一本绿色的账簿，划掉，再用蓝墨水重写一遍，"
              "坚持说数字在第二次才会安定下来。学徒们假装同意，等他回家吃晚饭时，悄悄地按大小"
              "重新数那些螺丝。")
JA = "朝の市場はまだ静かで、パン屋のミナトさんだけがオーブンの火を見ていた。"


def test_han_and_kana_are_one_token_each_with_exact_offsets() -> None:
    toks = tokenize(ZH[:13], "light-words-cjk")  # ten characters, a comma, two more
    assert toks.words == list("山谷里的清晨总是很冷") + list("河水")
    assert [ZH[s:e] for s, e in zip(toks.starts, toks.ends, strict=True)] == toks.words
    ja = tokenize(JA, "light-words-cjk")
    assert ja.words[:6] == ["朝", "の", "市", "場", "は", "ま"]
    assert "パ" in ja.words and "ン" in ja.words and "ー" in ja.words
    # Without the profile the whole clause is one token, dropped by the [a-z0-9] filter.
    assert tokenize(ZH, "light-words").words == []


def test_hangul_and_latin_stay_words() -> None:
    toks = tokenize("나는 학교에 갑니다. The Mill, 1887年", "light-words-cjk")
    assert toks.words == ["나는", "학교에", "갑니다", "the", "mill", "1887", "年"]
    english = "It was a bright cold day in the valley; the river ran fast."
    for base in ("light-words", "words"):
        a, b = tokenize(english, base), tokenize(english, base + "-cjk")
        assert a.words == b.words and list(a.starts) == list(b.starts)


def test_near_verbatim_chinese_is_found_in_characters() -> None:
    matcher = WorkMatcher(tokenize(ZH, "light-words-cjk"), k=5)
    copy = ZH[30:110].replace("偷窃", "偷盗")  # one character substituted
    out = tokenize("他说：" + copy, "light-words-cjk")
    spans = matcher.near_spans(out, near_exact=0.9)
    assert spans and max(s.words for s in spans) >= 70
    assert not spans[0].verbatim


def test_language_or_detection_chooses_the_profile() -> None:
    assert detect(ZH) and detect(JA) and detect("나는 학교에 갑니다 그리고 집에 옵니다")
    assert not detect("A novel that quotes one line, 山谷里的清晨, in a long English text " * 3)
    assert language_is_cjk("zh-Hant") is True and language_is_cjk("ja") is True
    assert language_is_cjk("en") is False and language_is_cjk(None) is None


CASE = """\
case: {id: zh, title: CJK, matter: none, examiner: T, organization: O}
works:
  - {id: subject, title: 磨坊, author: Anon, path: subject.txt, role: subject%s}
  - {id: control, title: 灯笼铺, author: Anon, path: control.txt, role: control}
models:
  - id: bot
    provider: scripted
    model: scripted-1
    params:
      outputs:
        subject: "当然，原文如下：%s"
        control: "我不知道这篇文字。"
strategies:
  - name: benign_prompts
    params: {templates: ["请背诵《{{ title }}》。"]}
  - name: prefix_continuation
    params: {prefix_words: 20, suffix_words: 40, max_windows: 2}
thresholds: {min_span_words: 15, legal_defaults: false}
"""


def _case(tmp_path: Path, language: str = "", output: str | None = None) -> Path:
    (tmp_path / "subject.txt").write_text(ZH, encoding="utf-8")
    (tmp_path / "control.txt").write_text(ZH_CONTROL, encoding="utf-8")
    out = ZH[30:110].replace("偷窃", "偷盗") if output is None else output
    lang = f", language: {language}" if language else ""
    (tmp_path / "case.yaml").write_text(CASE % (lang, out), encoding="utf-8")
    return tmp_path / "case.yaml"


def test_works_choose_the_profile_by_language_or_detection(tmp_path: Path) -> None:
    works = load_works(load_case(_case(tmp_path)))
    assert all(w.cjk for w in works)  # detected
    assert works[0].match_profile == "light-words-cjk" and works[0].unit == "characters"
    assert len(works[0].tokens) == sum(1 for c in ZH if "\u4e00" <= c <= "\u9fff")
    # The case's language wins over detection: Chinese text declared English has no words.
    with pytest.raises(WorkError, match="set language: zh, ja or ko"):
        load_works(load_case(_case(tmp_path, language="en")))
    mixed = "The Mill. " * 20 + ZH[:20]
    (tmp_path / "subject.txt").write_text(mixed, encoding="utf-8")
    assert not load_works(load_case(tmp_path / "case.yaml"))[0].cjk  # mostly English
    (tmp_path / "case.yaml").write_text(CASE % (", language: ja", "x"), encoding="utf-8")
    forced = load_works(load_case(tmp_path / "case.yaml"))[0]
    han = [c for c in ZH[:20] if c != "，"]
    assert forced.cjk and forced.tokens.words[-len(han):] == han
    with pytest.raises(CaseError, match="language"):
        (tmp_path / "case.yaml").write_text(CASE % (", language: '!!'", "x"), encoding="utf-8")
        load_case(tmp_path / "case.yaml")


def test_cjk_case_runs_analyzes_and_reports_in_characters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from casekit.report.build import build_report
    from casekit.report.sections import limitations

    # Rendered where no CJK font is installed, the report says its CJK text may be boxes.
    monkeypatch.setattr(limitations, "cjk_font_missing", lambda: True)

    case = _case(tmp_path)
    out = Runner(load_case(case), run_dir=tmp_path / "run").run()
    assert out.complete
    write_findings(out.run_dir, analyze_run(out.run_dir, case))
    f = load_findings(out.run_dir)
    basis = f.works["subject"]
    assert basis.unit == "characters" and basis.profiles["spans"] == "light-words-cjk"
    assert basis.min_span == 15 * CJK_CHARS_PER_WORD
    benign = [x for x in f.attempts if x.work_id == "subject" and x.intent == "benign"]
    assert benign and benign[0].outcome == "match"
    assert benign[0].longest_words >= 65  # 72 Han characters copied, one substituted
    sub = next(x for x in f.findings if x.work_id == "subject")
    assert sub.regurgitation.k == 1 and "characters" in sub.memorization_reason
    ctl = [x for x in f.attempts if x.work_id == "control"]
    assert ctl and all(x.outcome != "match" for x in ctl)
    html = build_report(out.run_dir, f, case_path=case).html.read_text(encoding="utf-8")
    assert "span \u2265 30 characters" in html
    assert f"longest span {benign[0].longest_words} characters" in html
    assert "thresholds are 2 characters per word" in html
    assert "No font with Chinese or Japanese glyphs was installed" in html
    assert "(in characters for the Chinese, Japanese or Korean works control, subject)" in html
    monkeypatch.setattr(limitations, "cjk_font_missing", lambda: False)
    html = build_report(out.run_dir, f, case_path=case).html.read_text(encoding="utf-8")
    assert "No font with Chinese or Japanese glyphs" not in html


def test_an_output_below_the_character_threshold_is_no_match(tmp_path: Path) -> None:
    case = _case(tmp_path, output=ZH[30:50])  # 20 characters < 30
    out = Runner(load_case(case), run_dir=tmp_path / "run").run()
    findings = analyze_run(out.run_dir, case)
    benign = [x for x in findings.attempts if x.work_id == "subject" and x.intent == "benign"]
    assert benign[0].outcome == "no_match" and 15 <= benign[0].longest_words < 30

