"""Shared helpers for the audio tests (issue 6): real media paths, reference transcripts, and
small artefacts the tests build themselves (silent WAV, long concatenated speech, tiny models)."""
from __future__ import annotations

import json
import re
import shutil
import wave
from pathlib import Path

import numpy as np

DATA = (Path(__file__).resolve().parent / ".." / ".." / "shared" / "data").resolve()
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


def long_speech_wav(path: Path, rounds: int = 1, gap: float = 0.6) -> tuple[Path, list[str]]:
    """The five LibriVox sentences and JFK, `rounds` times, with `gap` s of silence between them."""
    parts, refs = [], []
    silence = np.zeros(int(16000 * gap), dtype="<i2")
    for _ in range(rounds):
        for wav in LIBRI + [JFK]:
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
