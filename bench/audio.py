"""Audio benchmark: word error rate and real-time factor per available ASR backend,
speech-activity accuracy, and subtitle quality.

    .venv/bin/python bench/audio.py [--whisper-model DIR] [--json results.json]

Data, from the media folder beside the checkout (`shared/data`): speech_librivox_sense_sensibility
(five sentences with reference transcripts, machine word alignments and .lab speech spans) and
speech_jfk (one sentence).
WER is normalised for case and punctuation (pipeline_tasks.stages.audio.wer). The real-time factor is
recogniser seconds / audio seconds on the machine that runs it, measured inside the transcription stage (model
loading excluded). A Whisper backend is measured only when --whisper-model names a local
CTranslate2 Whisper directory (none can be downloaded here).
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline_tasks.stages.audio import decode, vad  # noqa: E402
from pipeline_tasks.stages.audio.cues import CueRules, build_cues, quality  # noqa: E402
from pipeline_tasks.stages.audio.transcript import Segment, read_segments  # noqa: E402
from pipeline_tasks.stages.audio.wer import corpus_wer, wer  # noqa: E402
from pipeline_tasks.stages.transcription import TranscriptionExecutor  # noqa: E402

DATA = (ROOT / ".." / "shared" / "data").resolve()
LIBRI = sorted((DATA / "speech_librivox_sense_sensibility").glob("*.wav"))
JFK = DATA / "speech_jfk" / "jfk.wav"
JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")


def reference(wav: Path) -> str:
    return JFK_TEXT if wav == JFK else wav.with_suffix(".txt").read_text().strip()


def aligned_words(wav: Path) -> list[tuple[str, float, float]]:
    data = json.loads(wav.with_suffix(".json").read_text())
    return [(re.sub(r"\(\d+\)$", "", w["t"]), w["b"], w["b"] + w["d"]) for w in data["w"] if not w["t"].startswith("<")]


def bench_asr(backend: str, config: dict, work: Path, repeat: int) -> dict:
    rows, pairs, compute, audio = [], [], 0.0, 0.0
    start_errors = []
    for wav in LIBRI + [JFK]:
        times = []
        for r in range(repeat):   # fresh output dirs: every run recognises; the fastest run counts
            out = work / backend / wav.stem if r == 0 else work / f"{backend}-rep{r}" / wav.stem
            stage = TranscriptionExecutor("bench", {"input": str(wav), "output_dir": str(out), "backend": backend,
                                                 **config})
            stage.validate_config()
            result = stage.execute({})
            times.append(result.metrics["compute_seconds"])
        out = work / backend / wav.stem
        segments = read_segments(out / "segments.jsonl")
        hyp = " ".join(s.text for s in segments)
        pairs.append((reference(wav), hyp))
        compute += min(times)
        audio += result.outputs["duration"]
        rows.append({"file": wav.name, "wer": round(wer(reference(wav), hyp), 3), "hypothesis": hyp})
        if wav != JFK:   # word start times against the machine alignment, over aligned matching words
            ref = aligned_words(wav)
            hyp_words = [w for seg in segments for w in seg.words]
            matcher = difflib.SequenceMatcher(a=[w for w, _, _ in ref], b=[w.word for w in hyp_words], autojunk=False)
            for block in matcher.get_matching_blocks():
                for k in range(block.size):
                    start_errors.append(abs(hyp_words[block.b + k].start - ref[block.a + k][1]))
    return {"backend": backend, "files": rows, "corpus_wer": round(corpus_wer(pairs), 4),
            "real_time_factor": round(compute / audio, 4), "audio_seconds": round(audio, 2),
            "word_start_error_mean": round(statistics.mean(start_errors), 3) if start_errors else None,
            "word_start_error_p90": round(sorted(start_errors)[int(0.9 * len(start_errors))], 3)
            if start_errors else None, "matched_words": len(start_errors)}


def bench_vad() -> dict:
    out = {}
    for method in ("silero", "webrtc"):
        errs, seconds, audio = [], 0.0, 0.0
        for wav in LIBRI:
            rows = [line.split() for line in wav.with_suffix(".lab").read_text().splitlines() if line.strip()]
            s_ref = next(float(r[0]) for r in rows if r[2] == "speech")
            e_ref = next(float(r[0]) for r in rows if r[2] == "silence")
            samples = decode.load_mono(wav)
            t0 = time.perf_counter()
            spans = vad.speech_spans(samples, method=method, pad=0.0)
            seconds += time.perf_counter() - t0
            audio += len(samples) / 16000
            errs += [abs(spans[0][0] - s_ref), abs(spans[-1][1] - e_ref)] if spans else [float("inf")] * 2
        sintel = decode.load_mono(DATA / "sintel_clip_26s" / "sintel_clip_26s.mp4")
        music = vad.speech_spans(sintel, method=method)
        out[method] = {"boundary_error_mean": round(statistics.mean(errs), 3),
                       "boundary_error_max": round(max(errs), 3),
                       "real_time_factor": round(seconds / audio, 4),
                       "speech_found_in_music_s": round(sum(e - s for s, e in music), 2)}
    return out


def subtitle_quality(segments: list[Segment], rules: CueRules) -> dict:
    cues = build_cues(segments, rules)
    q = quality(cues, rules)
    extension = [c.end - c.words[-1].end for c in cues]
    lead = [abs(c.start - c.words[0].start) for c in cues]
    q.update({"start_vs_first_word_max": round(max(lead), 3),
              "end_minus_last_word_mean": round(statistics.mean(extension), 3),
              "end_minus_last_word_min": round(min(extension), 3)})
    return q


def alignment_segments() -> list[Segment]:
    from pipeline_tasks.stages.audio.transcript import Word
    segs, offset = [], 0.0
    for wav in LIBRI:
        words = [Word(round(b + offset, 3), round(e + offset, 3), w) for w, b, e in aligned_words(wav)]
        segs.append(Segment(words[0].start, words[-1].end, " ".join(w.word for w in words), words))
        offset = words[-1].end + 0.8
    return segs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whisper-model", help="local CTranslate2 Whisper model directory")
    parser.add_argument("--json", help="write all results to this file")
    parser.add_argument("--repeat", type=int, default=3, help="runs per file; the fastest gives the RTF")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results["asr"] = [bench_asr("pocketsphinx", {}, work, args.repeat)]
        if args.whisper_model:
            results["asr"].append(bench_asr("faster_whisper", {"model_dir": args.whisper_model, "language": "en"},
                                            work, args.repeat))
        results["vad"] = bench_vad()
        rules = CueRules()
        strict = CueRules(max_chars=32, max_lines=2, max_cps=15.0, min_duration=1.0, max_duration=5.0)
        ps_segments = []
        offset = 0.0
        for wav in LIBRI:       # pocketsphinx output of the five sentences laid end to end
            segs = read_segments(work / "pocketsphinx" / wav.stem / "segments.jsonl")
            ps_segments += [s.shifted(offset) for s in segs]
            offset += 0.8 + len(decode.load_mono(wav)) / 16000
        results["subtitles"] = {
            "rules": {"default": rules.__dict__, "strict": strict.__dict__},
            "forced alignment, default rules": subtitle_quality(alignment_segments(), rules),
            "pocketsphinx, default rules": subtitle_quality(ps_segments, rules),
            "forced alignment, strict rules": subtitle_quality(alignment_segments(), strict),
            "pocketsphinx, strict rules": subtitle_quality(ps_segments, strict)}
    print("## ASR")
    print("| backend | corpus WER | RTF | word start error mean / p90 (s) | per-file WER |")
    print("|---|---|---|---|---|")
    for r in results["asr"]:
        per = ", ".join(f"{f['file'][-8:-4] if 'austen' in f['file'] else 'jfk'} {f['wer']}" for f in r["files"])
        print(f"| {r['backend']} | {r['corpus_wer']} | {r['real_time_factor']} | "
              f"{r['word_start_error_mean']} / {r['word_start_error_p90']} ({r['matched_words']} words) | {per} |")
    print("\n## VAD (LibriVox .lab speech boundaries; Sintel music clip)")
    print("| method | boundary error mean / max (s) | RTF | 'speech' found in 26 s of music (s) |")
    print("|---|---|---|---|")
    for m, r in results["vad"].items():
        print(f"| {m} | {r['boundary_error_mean']} / {r['boundary_error_max']} | {r['real_time_factor']} | "
              f"{r['speech_found_in_music_s']} |")
    print("\n## Subtitles (default: 42 chars x 2 lines, 17 CPS, 1-7 s; strict: 32 x 2, 15 CPS, 1-5 s)")
    print("| source, rules | cues | within lines | within CPS | within duration | overlaps | "
          "start vs first word (max s) | end - last word (mean / min s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, q in results["subtitles"].items():
        if name == "rules":
            continue
        print(f"| {name} | {q['cues']} | {q['within_line_limits']} | {q['within_cps']} | {q['within_duration']} | "
              f"{q['overlaps']} | {q['start_vs_first_word_max']} | {q['end_minus_last_word_mean']} / "
              f"{q['end_minus_last_word_min']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
