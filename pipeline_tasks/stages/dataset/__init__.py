"""Building a training dataset from clustered character crops (the `training_data_prep` stage).

One concern per module:
- `candidates`: read `clusters.jsonl` (+ optional `instances.jsonl`), resolve crop paths;
- `quality`: per-crop ranking signals (sharpness, visible area, face presence);
- `dedup`: perceptual hashes and near-duplicate removal;
- `selection`: ranking, balanced allocation across clusters, kohya repeats;
- `buckets`: target sizes (square, or aspect-ratio buckets);
- `resize`: fit a crop into its target size over a background fill;
- `captions`: caption text from a template;
- `kohya`: `<repeats>_<name>/` folders and the kohya dataset `.toml`;
- `hf`: `metadata.jsonl` for a Hugging Face `imagefolder`.
"""
