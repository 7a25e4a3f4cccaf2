"""Shared helpers for the audio tests: real media paths, reference transcripts, and
small artefacts the tests build themselves (silent WAV, long concatenated speech, tiny models)."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

# The tiny models are built with torch + transformers (the project's `ml` extra). Where that extra is
# not installed, the tests that need them say so instead of failing on an ImportError.
HAVE_ML = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "sentencepiece"))
needs_ml = pytest.mark.skipif(not HAVE_ML, reason="needs the ml extra: pip install -e '.[ml]' "
                                                  "(torch, transformers, sentencepiece)")

from conftest import SHARED_DATA as DATA  # noqa: E402  (../shared/data, with its fallbacks)

JFK = DATA / "speech_jfk" / "jfk.wav"
JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
LIBRI_DIR = DATA / "speech_librivox_sense_sensibility"
LIBRI = sorted(LIBRI_DIR.glob("*.wav"))
SINTEL = DATA / "sintel_clip_26s" / "sintel_clip_26s.mp4"        # music and effects, no dialogue
NO_AUDIO_VIDEO = DATA / "pyscenedetect_testvideo" / "testvideo.mp4"  # video stream only


def libri_reference(wav: Path) -> str:
    return wav.with_suffix(".txt").read_text(encoding="utf-8").strip()


def libri_lab(wav: Path) -> tuple[float, float]:
    """(speech start, speech end) from the .lab file."""
    rows = [line.split() for line in wav.with_suffix(".lab").read_text().splitlines() if line.strip()]
    start = next(float(r[0]) for r in rows if r[2] == "speech")
    end = next(float(r[0]) for r in rows if r[2] == "silence")
    return start, end


def libri_word_segments(wav: Path, offset: float = 0.0) -> list[dict]:
    """The .json forced alignment of a LibriVox sentence as one segments.jsonl record."""
    data = json.loads(wav.with_suffix(".json").read_text())
    words = [{"start": round(w["b"] + offset, 3), "end": round(w["b"] + w["d"] + offset, 3),
              "word": re.sub(r"\(\d+\)$", "", w["t"]), "probability": w["p"]}
             for w in data["w"] if not w["t"].startswith("<")]
    return [{"start": words[0]["start"], "end": words[-1]["end"], "text": " ".join(w["word"] for w in words),
             "words": words}]


def read_pcm(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()


def write_pcm(path: Path, pcm: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def silent_wav(path: Path, seconds: float = 3.0) -> Path:
    return write_pcm(path, np.zeros(int(16000 * seconds), dtype="<i2"))


def long_speech_wav(path: Path, rounds: int = 1, gap: float = 0.6,
                    files: list[Path] | None = None) -> tuple[Path, list[str]]:
    """`files` (default: the five LibriVox sentences and JFK), `rounds` times, with `gap` s of
    silence between them."""
    parts, refs = [], []
    silence = np.zeros(int(16000 * gap), dtype="<i2")
    for _ in range(rounds):
        for wav in files or LIBRI + [JFK]:
            pcm, rate = read_pcm(wav)
            assert rate == 16000
            parts += [pcm, silence]
            refs.append(libri_reference(wav) if wav != JFK else JFK_TEXT)
    return write_pcm(path, np.concatenate(parts)), refs


def build_tiny_marian(out: Path) -> Path:
    """A randomly initialised 1-layer MarianMT model with a 70-piece SentencePiece vocabulary,
    saved like a real Helsinki-NLP model (config, safetensors, source/target.spm, vocab.json)."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    work = out.parent / (out.name + "_spm")
    work.mkdir(parents=True, exist_ok=True)
    corpus = [libri_reference(w) for w in LIBRI] + [JFK_TEXT.lower(), "und so meine mitbürger fragt nicht",
                                                   "er war kein schlecht gesinnter junger mann"]
    (work / "corpus.txt").write_text("\n".join(corpus * 10), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(work / "corpus.txt"), model_prefix=str(work / "spm"), vocab_size=90,
                                   model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
                                   bos_id=-1, eos_id=1, unk_id=2, pad_id=0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(work / "spm.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    vocab.update({"<pad>": 0, "</s>": 1, "<unk>": 2})
    (work / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    for name in ("source.spm", "target.spm"):
        shutil.copy(work / "spm.model", work / name)
    tokenizer = MarianTokenizer(source_spm=str(work / "source.spm"), target_spm=str(work / "target.spm"),
                                vocab=str(work / "vocab.json"))
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
                          decoder_start_token_id=0)
    MarianMTModel(config).save_pretrained(out)
    return out


def normalise_words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_tiny_whisper(out: Path) -> Path:
    """A randomly initialised multilingual-layout Whisper (d_model 16, one layer each side) with a
    byte-level tokenizer holding Whisper's special tokens at their real ids, converted to
    CTranslate2 with ctranslate2's own converter: the same directory layout as a real
    faster-whisper model (model.bin, config.json, tokenizer.json, preprocessor_config.json)."""
    import ctranslate2.converters
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    hf = out.parent / (out.name + "_hf")
    hf.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    for i in range(len(vocab), 50257):
        vocab[f"Ġw{i}"] = i                       # decodes to the word " w<id>"
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    langs = list(LANGUAGES)[:99]
    specials = (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{code}|>" for code in langs]
                + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
                   "<|notimestamps|>"])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    assert tok.token_to_id("<|notimestamps|>") == 50363
    WhisperTokenizerFast(tokenizer_object=tok, unk_token="<|endoftext|>", bos_token="<|endoftext|>",
                         eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                         additional_special_tokens=specials[1:]).save_pretrained(hf)
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=51865, num_mel_bins=80, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, d_model=16, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=448,
                           pad_token_id=50257, bos_token_id=50257, eos_token_id=50257,
                           decoder_start_token_id=50258, suppress_tokens=[], begin_suppress_tokens=[220, 50257])
    model = WhisperForConditionalGeneration(config)
    model.generation_config.lang_to_id = {f"<|{code}|>": 50259 + i for i, code in enumerate(langs)}
    model.generation_config.suppress_tokens = []
    model.generation_config.begin_suppress_tokens = [220, 50257]
    model.save_pretrained(hf)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(hf)
    ctranslate2.converters.TransformersConverter(
        str(hf), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(str(out), force=True)
    # ctranslate2 4.8's converter reads the language ids from attributes that transformers 5 no longer
    # exposes (generation_config.lang_to_id, tokenizer.additional_special_tokens) and writes an empty
    # list; real converted models carry them, so put them where faster-whisper's language detection
    # looks for them.
    ct2_config = json.loads((out / "config.json").read_text())
    ct2_config["lang_ids"] = list(range(50259, 50259 + len(langs)))
    (out / "config.json").write_text(json.dumps(ct2_config, indent=2))
    # ctranslate2 4.8.5 decides "multilingual" by whether the vocabulary holds an empty-string token
    # (found by reading its WhisperReplica constructor and confirmed by experiment); our byte-level
    # filler vocabulary has none, so one unused filler id becomes "" (a BPE tokenizer cannot hold it).
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    vocabulary[50000] = ""
    (out / "vocabulary.json").write_text(json.dumps(vocabulary))
    return out
