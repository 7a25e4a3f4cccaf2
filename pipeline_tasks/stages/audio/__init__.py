"""Audio backends and helpers used by the audio stage types.

One concern per module: `decode` (PyAV decode/resample, WAV I/O), `vad` (speech activity),
`transcript` (segment/word records and their files), `chunking` (chunk plans for long audio),
`asr_*` (speech-recognition backends), `cues` (subtitle cue layout), `subtitle_files` (pysubs2
I/O), `translate_*` (translation backends), `wer` (word error rate). Heavy libraries are imported
inside the backend that needs them.
"""
