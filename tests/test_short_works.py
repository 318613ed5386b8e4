"""Short works (kind: poem | lyrics): refrain counted once, threshold scaled to the work,
coverage as the headline, a chance baseline, and the lyrics_recall strategy (GEMA's prompts).
The song here was written for these tests."""

from __future__ import annotations

import random
from pathlib import Path

from casekit.analysis.analyze import analyze_run, load_findings, write_findings
from casekit.case import load_case
from casekit.run.runner import Runner
from casekit.shortworks import CHANCE_FLOOR_WORDS, refrain_repeats, short_min_span
from casekit.strategies.lyrics import LyricsRecall, chorus_and_verses
from casekit.works import load_works, work_thresholds

VERSE1 = ("The lantern swings above the quay\nThe gulls are quarrelling with the tide\n"
          "My brother rows the herring home\nWith salt and silver at his side")
CHORUS = ("So raise the sail and mend the net\nThe harbour bell is ringing yet\n"
          "Come home before the morning light\nAnd sing the herring in tonight")
VERSE2 = ("The ropes are frozen on the rail\nThe mackerel sky is turning grey\n"
          "My mother counts the empty creels\nAnd listens for the boat all day")
SONG = f"{VERSE1}\n\n{CHORUS}\n\n{VERSE2}\n\n{CHORUS}\n"
CONTROL = ("Copper kettles hummed in the lantern shop while Orvel sorted brass screws by the "
           "colour of their reflections, a method nobody else in Pellingham understood. Each "
           "evening he wrote the tally in a green ledger, crossed it out, and wrote it again.")
# A prose text that shares one phrase of the song ("the harbour bell is ringing") by chance.
OTHER = ("In the old town the harbour bell is ringing for the fair, and the children run down "
         "the lanes to watch the jugglers and the bakers with their trays of bread. ") * 2

# A reference text (reference_texts:) sharing eight words of the song by chance.
REFERENCE = "They left before the morning light and sing the herring songs at noon. " * 3


def test_repeated_lines_are_found_after_their_first_occurrence() -> None:
    repeats = refrain_repeats(SONG, "light-words")
    assert [SONG[s:e] for s, e in repeats] == CHORUS.split("\n")
    assert all(s > SONG.index(VERSE2) for s, _ in repeats)  # the first chorus counts
    # A two-word line that repeats is not a refrain.
    assert refrain_repeats("Oh no\nwhat a day\nOh no\n", "light-words") == []


def test_the_threshold_scales_with_the_work() -> None:
    assert short_min_span(40, 150) == 15  # a tenth of the work
    assert short_min_span(40, 60) == CHANCE_FLOOR_WORDS  # never below the chance floor
    assert short_min_span(10, 300) == 10  # never above the case's threshold
    assert short_min_span(80, 100, floor=24) == 24  # a CJK work's floor is in characters


CASE = """\
case: {id: song, title: Song, matter: none, examiner: T, organization: O}
works:
  - {id: song, title: The Herring Song, author: Anon, path: song.txt, role: subject, kind: lyrics}
  - {id: other, title: The Fair, author: Anon, path: other.txt, role: subject}
  - {id: control, title: The Lantern Shop, author: O, path: control.txt, role: control}
models:
  - id: bot
    provider: scripted
    model: scripted-1
    params:
      outputs:
        song: %s
        control: "I do not know this text."
        other: "A fair, I think."
reference_texts: [ref.txt]
strategies:
  - name: lyrics_recall
    works: [song, control]
  - name: benign_prompts
    params: {templates: ["Tell me about {{ title }}."]}
    works: [song, control]
"""


def _case(tmp_path: Path, output: str) -> Path:
    (tmp_path / "song.txt").write_text(SONG)
    (tmp_path / "control.txt").write_text(CONTROL)
    (tmp_path / "other.txt").write_text(OTHER)
    (tmp_path / "ref.txt").write_text(REFERENCE)
    import json

    (tmp_path / "case.yaml").write_text(CASE % json.dumps(output))
    return tmp_path / "case.yaml"


def test_refrain_counts_once_and_the_threshold_rule_is_stated(tmp_path: Path) -> None:
    case = load_case(_case(tmp_path, "x"))
    song = load_works(case)[0]
    assert len(song.refrains) == 4
    assert len(song.tokens) == 3 * 26  # two verses and the chorus once, 26 words each
    th, rule = work_thresholds(case.spec.thresholds, song)
    assert th.min_span_words == CHANCE_FLOOR_WORDS  # a tenth of 78 words is below 12
    assert "short work" in rule and "counts once" in rule and "measurement.md" in rule
    prose = load_works(case)[1]
    assert work_thresholds(case.spec.thresholds, prose) == (case.spec.thresholds, "")


def test_lyrics_recall_asks_by_title_chorus_and_verse(tmp_path: Path) -> None:
    song = load_works(load_case(_case(tmp_path, "x")))[0]
    chorus, verses = chorus_and_verses(song)
    assert chorus is not None and song.raw[chorus[0]:chorus[1]] == CHORUS
    assert [song.raw[s:e] for s, e in verses] == [VERSE1, VERSE2]
    probes = list(LyricsRecall({}).plan(song, random.Random(0)))
    assert [p.label for p in probes] == ["title", "chorus", "verse 1", "verse 2"]
    assert probes[0].chat_text == "What are the lyrics of The Herring Song by Anon?"
    assert "verse 2 of The Herring Song" in (probes[3].chat_text or "")
    assert probes[1].target is not None
    assert song.raw[probes[1].target.start:probes[1].target.end] == CHORUS
    assert probes[3].target is not None
    assert song.raw[probes[3].target.start:probes[3].target.end] == VERSE2
    assert probes[0].text == "The Herring Song\nby Anon\n\n"  # base models continue


def test_short_work_end_to_end(tmp_path: Path) -> None:
    """An answer that sings the chorus three times and one verse: the chorus counts once in
    coverage and is shown once in the exhibit, the headline is the share of the work, the
    chance baseline is measured."""
    from casekit.report.build import build_report

    answer = f"Here it is:\n{CHORUS}\n\n{VERSE2}\n\n{CHORUS}\n\n{CHORUS}\n"
    case = _case(tmp_path, answer)
    out = Runner(load_case(case), run_dir=tmp_path / "run").run()
    assert out.complete
    write_findings(out.run_dir, analyze_run(out.run_dir, case))
    f = load_findings(out.run_dir)
    basis = f.works["song"]
    assert basis.kind == "lyrics" and basis.min_span == 12 and basis.refrain_lines == 4
    song = next(x for x in f.findings if x.work_id == "song")
    # Chorus and verse 2 (26 words each) of 78 counted words: the second chorus of the
    # answer adds nothing, and no repeat of the chorus is counted in the work.
    assert song.coverage.total_words == 78
    assert song.coverage.covered_words == 26 + 26
    assert song.extraction.k == song.extraction.n == 4  # every lyrics_recall attempt
    ch = basis.chance
    assert ch is not None and ch.reference_works == ["other", "control"]
    assert ch.longest_shared == 8  # "before the morning light and sing the herring" (ref.txt)
    assert list(ch.reference_files) == ["ref.txt"]
    assert ch.reference_files["ref.txt"].startswith("sha256:")
    assert ch.shared_at_min_span == 0
    assert ch.control_attempts == 3 and ch.control_reaching == 0  # title, verse 1, benign
    html = build_report(out.run_dir, f, case_path=case).html.read_text(encoding="utf-8")
    assert "Short work (lyrics): 66.7% of the work reproduced (52 of 78 counted words, " \
        "the repeated refrain counted once)" in html
    assert "share at most 8 consecutive words with this work (0 runs of 12 words or more)" in html
    assert ("0 of 3 control attempts, every model&#39;s in this case pooled (each model&#39;s "
            "own are in its control floor), had a span of 12 words or more") in html
    assert "short work: reporting threshold min(case 40, max(12, 10% of 78 counted words))" \
        " = 12 words" in html
    # The exhibit shows the chorus the answer repeats once, and says how often it was sung.
    assert "2 times in the output, shown once" in html


def test_a_missing_reference_text_stops_before_anything_is_recorded(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from casekit.cli import cli

    case = _case(tmp_path, "x")
    (tmp_path / "ref.txt").unlink()
    res = CliRunner().invoke(cli, ["run", str(case)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "reference_texts[0]: cannot read" in errors[0]
    assert not (tmp_path / "runs").exists()


def test_the_chance_baseline_says_it_pools_every_models_control_attempts(tmp_path: Path,
                                                                          ) -> None:
    # With two models the chance baseline counted "0 of 6 control attempts" on each model's
    # page beside that model's control floor of "0 of 3": two numbers for control attempts,
    # one of them pooled without saying so.
    import json

    from casekit.report.build import build_report

    case = _case(tmp_path, CHORUS)
    two = CASE.replace("models:\n", "models:\n  - id: bot2\n    provider: scripted\n"
                       "    model: scripted-2\n    params: {outputs: {song: \"la la\"}}\n", 1)
    case.write_text(two % json.dumps(CHORUS))
    out = Runner(load_case(case), run_dir=tmp_path / "run").run()
    write_findings(out.run_dir, analyze_run(out.run_dir, case))
    f = load_findings(out.run_dir)
    ch = f.works["song"].chance
    floors = {c.model_id: c.attempts.n for c in f.controls}
    assert floors == {"bot2": 3, "bot": 3} and ch is not None
    assert ch.control_attempts == sum(floors.values()) == 6
    html = build_report(out.run_dir, f, case_path=case).html.read_text(encoding="utf-8")
    assert html.count("0 of 6 control attempts, every model&#39;s in this case pooled (each "
                      "model&#39;s own are in its control floor)") == 2  # one per model's page
    # The bottom line counted the song's spans at its own threshold (12 words) but said
    # "Prompts with a span of 40 words or more", the case's threshold for prose.
    assert f.min_span("song") == 12 and f.thresholds.min_span_words == 40
    bl = html.split('id="bottom-line"', 1)[1].split("</section>", 1)[0]
    assert bl.count("Prompts with a span of 12 words or more") == 2  # one per model
    # The control is prose: its floor counts at the prose threshold, and says so.
    assert bl.count("generation attempts with a span of 40 words or more, the rate of chance "
                    "reproduction") == 2


def test_the_chance_baseline_counts_the_attempts_of_the_control_floor(tmp_path: Path) -> None:
    # The report says the baseline pools every model's control attempts and that each model's
    # own are in its control floor, which leaves out attempts that failed or returned no text
    # to match: the baseline counted an unscorable attempt the floor did not, so the two
    # counts of "control attempts" could not be reconciled.
    from casekit.analysis.chance import chance_baseline
    from casekit.analysis.findings import AttemptAnalysis
    from casekit.analysis.matcher import WorkMatcher

    works = load_works(load_case(_case(tmp_path, "x")))
    song = works[0]

    def control(seq: int, outcome: str, longest: int) -> AttemptAnalysis:
        return AttemptAnalysis(attempt_id=f"c{seq}", seq=seq, record_hash="", model_id="bot",
                               work_id="control", role="control", strategy="benign_prompts",
                               strategy_key="benign_prompts#0", intent="benign", mode="chat",
                               sample=0, label="", outcome=outcome, longest_words=longest)

    attempts = [control(1, "no_match", 0), control(2, "match", 20), control(3, "error", 0),
                control(4, "unscorable", 0), control(5, "refusal", 0)]
    ch = chance_baseline(song, WorkMatcher.for_work(song, song.match_profile), works,
                         12, attempts)
    assert (ch.control_attempts, ch.control_reaching, ch.control_longest) == (3, 1, 20)


def test_the_test_against_the_control_counts_both_sides_at_the_songs_threshold(
        tmp_path: Path) -> None:
    # The song is counted at its own 12 words, the prose control's floor at the case's 40:
    # the test compared the song's spans of 12 words or more with the control's of 40 or
    # more, a control rate lower than chance at 12 words, and so a test too ready to find
    # that the song's rate exceeds it. Both sides are now counted at the song's threshold.
    import json

    case = _case(tmp_path, CHORUS)
    tail = " ".join(CONTROL.split()[-20:])  # 20 words of the control: >= 12, < 40
    case.write_text(case.read_text(encoding="utf-8").replace(
        'control: "I do not know this text."', f"control: {json.dumps(tail)}"),
        encoding="utf-8")
    out = Runner(load_case(case), run_dir=tmp_path / "run").run()
    write_findings(out.run_dir, analyze_run(out.run_dir, case))
    f = load_findings(out.run_dir)
    floor = next(c for c in f.controls if c.model_id == "bot")
    song = next(x for x in f.findings if x.work_id == "song")
    assert f.min_span("song") == 12 and f.min_span("control") == 40
    assert floor.attempts.n > 0 and floor.attempts.k == 0  # no control span of 40 words
    t = song.vs_control
    assert t is not None
    ctrl = [x for x in f.attempts if x.role == "control" and x.span_attempt]
    assert t.control.n == floor.attempts.n == len(ctrl)
    assert t.control.k == sum(1 for x in ctrl if x.longest_words >= 12) > 0
    # The summary put the song's rates at 12 words beside the floor at 40 (0 of 3): its
    # floor cells now count the control at the song's threshold too, and say so.
    from casekit.report.build import build_report

    page = build_report(out.run_dir, f, case_path=case).html.read_text(encoding="utf-8")
    summary = page.split('id="summary"', 1)[1].split('id="summary-bot2"', 1)[0]
    song_rows = summary.split("\u00d7 The Herring Song", 1)[1].split("</table>", 1)[0]
    k_of_n = f"{t.control.k} of {t.control.n}"
    assert f"all control attempts: {k_of_n}, one-sided 95% upper bound" in song_rows
    assert ("counted at this work&#39;s reporting threshold, 12 words, as in the test against "
            "the control; at the controls&#39; own threshold (40 words) the floor is "
            f"0 of {floor.attempts.n}") in song_rows
    overview = summary.split("</table>", 1)[0]
    assert f"{k_of_n}; \u2264 " in overview and "at 12 words" in overview
    # The model's floor itself, at the control's own threshold, is unchanged.
    assert f"Control floor of this model: 0 of {floor.attempts.n} control attempts" in summary


def test_a_threshold_in_characters_is_converted_to_a_controls_words() -> None:
    from casekit.analysis.control_test import control_threshold

    assert control_threshold(12, "words", "words") == 12
    assert control_threshold(80, "characters", "words") == 40  # 2 characters per word
    assert control_threshold(25, "characters", "words") == 13  # rounded up: never lower
    assert control_threshold(40, "words", "characters") == 80


def test_each_control_line_of_the_bottom_line_counts_its_own_control(tmp_path: Path) -> None:
    # With two control works the bottom line printed the model's floor, pooled over both,
    # under each control's line: "0 of 3" and "0 of 3" read as each control's own where one
    # control was reproduced in every attempt and the other in none.
    import json

    from casekit.report.build import build_report

    control2 = ("Quillon tide tables were kept in a drawer of the harbour office, and every "
                "spring the clerk copied them by hand into a new almanac, adding a note on the "
                "margin whenever the moon and the ledger disagreed about the height of the "
                "water at the northern steps.")
    case = _case(tmp_path, CHORUS)
    (tmp_path / "control2.txt").write_text(control2)
    text = case.read_text(encoding="utf-8")
    text = text.replace(
        "  - {id: control, title: The Lantern Shop, author: O, path: control.txt, role: control}\n",
        "  - {id: control, title: The Lantern Shop, author: O, path: control.txt, role: control}\n"
        "  - {id: control2, title: The Tide Tables, author: O, path: control2.txt, "
        "role: control}\n")
    text = text.replace('        other: "A fair, I think."\n',
                        '        other: "A fair, I think."\n'
                        f"        control2: {json.dumps(control2)}\n")
    text = text.replace("    params: {templates: [\"Tell me about {{ title }}.\"]}\n"
                        "    works: [song, control]\n",
                        "    params: {templates: [\"Tell me about {{ title }}.\"]}\n"
                        "    works: [song, control, control2]\n")
    case.write_text(text, encoding="utf-8")
    out = Runner(load_case(case), run_dir=tmp_path / "run").run()
    write_findings(out.run_dir, analyze_run(out.run_dir, case))
    f = load_findings(out.run_dir)
    floor = next(c for c in f.controls if c.model_id == "bot")
    own = {w: [x for x in f.attempts if x.work_id == w and x.matched_output]
           for w in ("control", "control2")}
    hits = {w: sum(1 for x in xs if x.longest_words >= f.min_span(w)) for w, xs in own.items()}
    assert hits["control"] == 0 and hits["control2"] == len(own["control2"]) > 0
    assert (floor.attempts.k, floor.attempts.n) == (hits["control2"],
                                                    len(own["control"]) + len(own["control2"]))
    html = build_report(out.run_dir, f, case_path=case).html.read_text(encoding="utf-8")
    bl = html.split('id="bottom-line"', 1)[1].split("</section>", 1)[0]
    lantern = bl.split("The Lantern Shop (control)", 1)[1].split("</li>", 1)[0]
    tides = bl.split("The Tide Tables (control)", 1)[1].split("</li>", 1)[0]
    assert f"0 of {len(own['control'])} generation attempts with a span" in lantern
    n2 = len(own["control2"])
    assert f"{n2} of {n2} generation attempts with a span" in tides
    pooled = f"{floor.attempts.k} of {floor.attempts.n} generation attempts"
    assert pooled not in lantern and pooled not in tides
