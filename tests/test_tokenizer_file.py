"""``params.tokenizer``: a served model's tokenizer.json (or .gguf) as the census's planning
tokenizer. The tokenizer.json files are trained here (tests/tokenizer_files.py), in the
shapes real models ship; every claim is checked against ``tokenizers``' own encoding."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from casekit.cli import cli
from casekit.errors import CasekitError
from casekit.providers.tokenizer_file import (
    BYTE_DECODER,
    HFTokenizer,
    UnsupportedTokenizer,
    bytes_to_unicode,
    load_case_tokenizer,
)
from casekit.strategies.census import census_windows
from tests.conftest import case_yaml
from tests.tokenizer_files import byte_level, metaspace

LAYOUTS = ["byte_level", "first", "legacy", "gemma"]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tokenizers")
    byte_level(d / "byte_level.json")
    for layout in ("first", "legacy", "gemma"):
        metaspace(d / f"{layout}.json", layout)
    return d


def load(d: Path, layout: str) -> HFTokenizer:
    t = load_case_tokenizer(f"{layout}.json", None, d, "m", "served")
    assert isinstance(t, HFTokenizer)
    return t


# Text that exercises multi-byte characters: accents, CJK, emoji (4 bytes, several with
# joiners), combining marks, whitespace runs; surrogates cannot be encoded and are excluded.
TEXT = st.lists(st.one_of(
    st.sampled_from(list("abc xyz  \n\t.,;'\"-") + ["é", "ß", "ñ", "中", "文", "🎉", "👩‍👩‍👧",
                                                    "e\u0301", "\u00a0", "ﬁ", "Å"]),
    st.characters(blacklist_categories=("Cs",))), min_size=0, max_size=60).map("".join)


def usable(layout: str, text: str) -> str:
    """A Metaspace tokenizer reads a literal ▁ (U+2581) as a space, as the model does, so a
    text holding one cannot be given back (see test_a_literal_space_mark_is_refused)."""
    return text if layout == "byte_level" else text.replace("\u2581", "")


def test_a_literal_space_mark_is_refused(tok_dir: Path) -> None:
    t = load(tok_dir, "gemma")
    text = "the mill\u2581the river ran fast under the bridge"
    assert b"".join(t.piece(i) for i in t.token_ids(text)) != text.encode()
    with pytest.raises(CasekitError, match=f"does not give characters 0..{len(text)} back byte "
                       "for byte"):
        census_windows(text, [(0, len(text))], t, 2, 2, 1)


def test_byte_table_is_gpt2s() -> None:
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    assert BYTE_DECODER["Ġ"] == 32


@pytest.mark.parametrize("layout", LAYOUTS)
def test_families_are_detected(tok_dir: Path, layout: str) -> None:
    t = load(tok_dir, layout)
    if layout == "byte_level":
        assert t.info.family == "byte-level BPE" and t.info.prepends_space is False
    else:
        assert t.info.family == "Metaspace BPE + byte fallback"
        assert t.info.prepends_space is (layout != "gemma")
    assert t.info.format == "tokenizer.json" and t.info.sha256.startswith("sha256:")
    assert t.special_ids  # <|endoftext|> / <unk> <s> </s>


@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(text=TEXT)
def test_pieces_give_the_text_back_and_ids_are_tokenizers_own(tok_dir: Path, layout: str,
                                                             text: str) -> None:
    text = usable(layout, text)
    t = load(tok_dir, layout)
    own = Tokenizer.from_file(str(tok_dir / f"{layout}.json"))
    ids = t.token_ids(text)
    assert b"".join(t.piece(i) for i in ids) == text.encode("utf-8")
    # As the server would tokenize a prompt (first-word space included): tokenizers' own ids.
    assert t.prompt_ids(text) == own.encode(text, add_special_tokens=False).ids
    if not t.info.prepends_space:
        assert ids == t.prompt_ids(text)
    elif layout == "first" and text.startswith(" "):
        # prepend_scheme: first adds no ▁ before text that already starts with one: the
        # in-context ids are then exactly tokenizers' own.
        assert ids == own.encode(text, add_special_tokens=False).ids
    # The first-word space is the only difference: a word after a space is tokenized alike.
    assert t.token_ids(" " + text)[:] == own.encode(" " + text, add_special_tokens=False).ids \
        or layout == "legacy"  # Prepend("▁") prepends even before a space (as SentencePiece)


def test_legacy_prepend_is_switched_off_for_planning(tok_dir: Path) -> None:
    t = load(tok_dir, "legacy")
    own = Tokenizer.from_file(str(tok_dir / "legacy.json"))
    text = "the river"
    assert own.decode(own.encode(text, add_special_tokens=False).ids) in (text, " " + text)
    assert [t.piece(i) for i in t.prompt_ids(text)][0].startswith(b" ")
    assert not t.piece(t.token_ids(text)[0]).startswith(b" ")


def test_byte_fallback_pieces_are_single_bytes_and_windows_inside_a_character_dropped(
        tok_dir: Path) -> None:
    t = load(tok_dir, "gemma")
    text = "the mill 🎉 the river ran 中文 fast under the bridge " * 3
    ids = t.token_ids(text)
    fallback = [i for i in ids if len(t.piece(i)) == 1 and t.piece(i)[0] >= 0x80]
    assert len(fallback) >= 3 * (4 + 6)  # 🎉 (4 bytes) and 中文 (3 + 3) are byte tokens
    cp = census_windows(text, [(0, len(text))], t, 2, 2, 1)
    assert cp.inside_character > 0 and cp.windows
    for w in cp.windows:  # every kept window maps to whole characters and to its ids
        assert b"".join(t.piece(i) for i in w.token_ids) == \
            text[w.prefix.start:w.suffix.end].encode()


@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(text=TEXT)
def test_census_windows_map_to_their_text(tok_dir: Path, layout: str, text: str) -> None:
    text = usable(layout, text)
    t = load(tok_dir, layout)
    cp = census_windows(text, [(0, len(text))], t, 2, 1, 1)
    for w in cp.windows:
        assert b"".join(t.piece(i) for i in w.token_ids) == \
            text[w.prefix.start:w.suffix.end].encode()


def _wordpiece(path: Path) -> Path:
    from tokenizers import models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["the river ran fast"], trainers.WordPieceTrainer(
        vocab_size=50, special_tokens=["[UNK]"], show_progress=False))
    tok.save(str(path))
    return path


def test_other_families_are_refused(tmp_path: Path) -> None:
    _wordpiece(tmp_path / "wp.json")
    with pytest.raises(UnsupportedTokenizer, match=r"params\.tokenizer: tokenizer family not "
                       r"supported \(model WordPiece.*byte-level BPE.*Metaspace"):
        load_case_tokenizer("wp.json", None, tmp_path, "m", "x")
    data = json.loads(byte_level(tmp_path / "bl.json").read_text())
    data["normalizer"] = {"type": "NFKC"}
    (tmp_path / "nfkc.json").write_text(json.dumps(data))
    with pytest.raises(UnsupportedTokenizer, match="normalizer NFKC rewrites the text"):
        load_case_tokenizer("nfkc.json", None, tmp_path, "m", "x")


def test_paths_and_hashes(tmp_path: Path) -> None:
    byte_level(tmp_path / "tok.json")
    with pytest.raises(CasekitError, match="cannot read 'nope.json'"):
        load_case_tokenizer("nope.json", None, tmp_path, "m", "x")
    with pytest.raises(CasekitError, match="leaves the case folder"):
        load_case_tokenizer("../tok.json", None, tmp_path, "m", "x")
    with pytest.raises(CasekitError, match="absolute paths are not allowed"):
        load_case_tokenizer(str(tmp_path / "tok.json"), None, tmp_path, "m", "x")
    good = load_case_tokenizer("tok.json", None, tmp_path, "m", "x").info.sha256
    assert load_case_tokenizer("tok.json", good, tmp_path, "m", "x").info.sha256 == good
    assert load_case_tokenizer("tok.json", good.removeprefix("sha256:"), tmp_path, "m",
                               "x").info.sha256 == good
    with pytest.raises(CasekitError, match="params.tokenizer_sha256: 'tok.json' has sha256:"):
        load_case_tokenizer("tok.json", "0" * 64, tmp_path, "m", "x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link.json").symlink_to(tmp_path / "tok.json")
    assert load_case_tokenizer("sub/link.json", good, tmp_path, "m", "x").info.sha256 == good


CENSUS_SERVER = """\
models:
  - id: srv
    provider: openai-compatible
    model: served
    base_url: http://127.0.0.1:9/v1
    interface: completion
    params:
      score_method: prompt_logprobs
{params}
strategies:
  - name: pz_census
    params: {{prefix_tokens: 5, suffix_tokens: 5, stride_chars: 50}}
thresholds: {{min_span_words: 15, legal_defaults: false}}
"""


def _case(case_dir: Path, params: str) -> Path:
    (case_dir / "case.yaml").write_text(case_yaml(CENSUS_SERVER.format(
        params=textwrap.indent(params, "      ")), ""))
    return case_dir / "case.yaml"


@pytest.mark.parametrize("params, needle, message", [
    ("tokenizer: missing.json\n", "tokenizer: missing.json",
     "params.tokenizer: cannot read 'missing.json'"),
    ("tokenizer: tok.json\ntokenizer_sha256: " + "ab" * 32 + "\n", "tokenizer_sha256:",
     "params.tokenizer_sha256: 'tok.json' has sha256:"),
    ("tokenizer: wp.json\n", "tokenizer: wp.json", "tokenizer family not supported"),
])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_tokenizer_params_are_one_line_case_errors(case_dir: Path, params: str, needle: str,
                                                      message: str, command: str) -> None:
    byte_level(case_dir / "tok.json")
    _wordpiece(case_dir / "wp.json")
    path = _case(case_dir, params)
    res = CliRunner().invoke(cli, [command, str(path)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert message in res.output
    line = int(res.output.split("case.yaml:")[1].split(":")[0])
    assert needle in path.read_text().splitlines()[line - 1]
    assert not (case_dir / "runs").exists()


def test_a_census_on_a_server_without_params_tokenizer_names_the_fix(case_dir: Path) -> None:
    path = _case(case_dir, "transport: http\n")
    text = path.read_text().replace("stride_chars: 50}", "stride_chars: 50}\n    models: [srv]")
    path.write_text(text)
    res = CliRunner().invoke(cli, ["validate", str(path)])
    assert res.exit_code == 2
    assert "gives no tokenizer (set the model's params.tokenizer to the served model's " \
           "tokenizer.json or .gguf); remove 'srv'" in res.output


def test_unknown_params_are_still_refused(case_dir: Path) -> None:
    byte_level(case_dir / "tok.json")
    path = _case(case_dir, "tokenizer: tok.json\ntokeniser_sha256: abc\n")
    res = CliRunner().invoke(cli, ["run", str(path)])
    assert res.exit_code == 2 and "models[0].params.tokeniser_sha256: unknown " \
        "openai-compatible provider param; remove it" in res.output


def test_echo_cross_check_compares_token_texts(tok_dir: Path) -> None:
    """Echo gives token texts, not ids: they must be the planning tokenizer's pieces (as a
    llama.cpp server shows them: UTF-8 per token, broken characters dropped), after an
    empty or special leading token and before the one generated token."""
    from casekit.case import ModelSpec
    from casekit.providers.base import CapabilityError
    from casekit.providers.openai_compatible import OpenAICompatibleProvider

    spec = ModelSpec(id="srv", provider="openai-compatible", model="m", interface="completion",
                     base_url="http://127.0.0.1:9/v1", params={"tokenizer": "gemma.json"})
    p = OpenAICompatibleProvider(spec, tok_dir)
    assert p.identity().identity["tokenizer_family"] == "Metaspace BPE + byte fallback"
    tok = p.case_tokenizer
    assert tok is not None
    text = "the river 🎉 ran"
    pieces = [tok.piece(i).decode("utf-8", "ignore") for i in tok.prompt_ids(text)]
    assert "" in pieces  # the emoji's byte tokens show as empty texts, as llama-cpp-python's

    def echo(tokens: list[str]) -> list[dict[str, object]]:
        return [{"token": t} for t in tokens]

    for got in (pieces, pieces + [" x"], [""] + pieces + [" x"]):
        check = p._check_tokenizer_echo(text, echo(got))
        assert check["status"] == "match" and check["n_tokens"] == len(pieces)
    merged = [pieces[0] + pieces[1]] + pieces[2:] + [" x"]  # one boundary elsewhere
    with pytest.raises(CapabilityError, match="does not tokenize like the server: the server "
                                              "echoes"):
        p._check_tokenizer_echo(text, echo(merged))
    with pytest.raises(CapabilityError, match="does not tokenize like the server"):
        p._check_tokenizer_echo(text, echo(["<bos>"] + pieces))  # not a special of this file


def test_a_tokenizer_file_over_the_limit_or_not_regular_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tokenizer.json is parsed whole: one larger than the limit (a hostile case's 2 GB file)
    or a FIFO is refused with the limit and the fix, before it is read (issue 15)."""
    import os

    from casekit.providers import tokenizer_file

    byte_level(tmp_path / "tok.json")
    size = (tmp_path / "tok.json").stat().st_size
    monkeypatch.setattr(tokenizer_file, "TOKENIZER_MAX_BYTES", size - 1)
    tokenizer_file._load.cache_clear()
    with pytest.raises(CasekitError, match=rf"params.tokenizer: 'tok.json' is {size:,} bytes, "
                       rf"over the limit of {size - 1:,} bytes for a tokenizer.json; give "):
        load_case_tokenizer("tok.json", None, tmp_path, "m", "x")
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(CasekitError, match=r"'fifo.json' is not a regular file .*; give the "):
        load_case_tokenizer("fifo.json", None, tmp_path, "m", "x")
