"""Tiny Hugging Face tokenizer.json files trained by the tests themselves (no model hub), in
the shapes real models ship:

* ``byte_level``: GPT-2 / SmolLM2 / Llama 3 style: ByteLevel pre-tokenizer and decoder, BPE
  over the 256-symbol byte alphabet, ``<|endoftext|>`` as the special token.
* ``metaspace``: SentencePiece style with byte fallback: BPE with ``<0x00>``..``<0xFF>`` in the
  vocabulary and ``<s>`` / ``</s>`` / ``<unk>`` special tokens, in three layouts:
  ``"first"`` (Llama 2 / Mistral as saved by recent ``tokenizers``: a Metaspace
  pre-tokenizer with ``prepend_scheme: first``), ``"legacy"`` (older Llama 2 files: a
  ``Prepend("▁")`` + ``Replace(" ", "▁")`` normalizer) and ``"gemma"`` (``Replace`` only, no
  space prepended).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from tests.conftest import CONTROL, SUBJECT

CORPUS = [SUBJECT, CONTROL, "The quick brown fox jumps over the lazy dog. " * 3,
          "Ein Käfer läuft über die Straße; café, naïve, déjà vu."]


def byte_level(path: Path, vocab_size: int = 400, corpus: list[str] | None = None) -> Path:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus or CORPUS, trainer)
    tok.save(str(path))
    return path


def metaspace(path: Path, layout: str = "first", vocab_size: int = 300,
              corpus: list[str] | None = None,
              specials: tuple[str, ...] = ("<unk>", "<s>", "</s>")) -> Path:
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    mark = "\u2581"
    if layout == "first":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=mark, prepend_scheme="first",
                                                     split=False)
        tok.decoder = decoders.Metaspace(replacement=mark, prepend_scheme="first", split=False)
    else:
        steps = [normalizers.Replace(" ", mark)]
        if layout == "legacy":
            steps.insert(0, normalizers.Prepend(mark))
        tok.normalizer = normalizers.Sequence(steps)
        tok.decoder = decoders.Sequence([decoders.Replace(mark, " "), decoders.ByteFallback(),
                                         decoders.Fuse()])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  limit_alphabet=40, show_progress=False)
    tok.train_from_iterator(corpus or CORPUS, trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    nxt = max(vocab.values()) + 1
    for b in range(256):  # the byte-fallback tokens, in the model's vocabulary as in Llama 2
        name = f"<0x{b:02X}>"
        if name not in vocab:
            vocab[name] = nxt
            nxt += 1
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path
