"""`names.yaml`: the names a person gives identities (by fingerprint), and the identities to leave out.

```yaml
names:
  cluster_ab12: heroine      # or just ab12
  cluster_cd34: sidekick
exclude: [cluster_ef56]      # junk a person recognised: never in a dataset
```

`pipeline-tasks clusters PIPELINE` shows each cluster's contact sheet with its fingerprint to name
them by. training_data_prep (`names:`) uses the names for concept folders and captions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import StageConfigError


def key(identity: str) -> str:
    """`cluster_ab12` and `ab12` name the same identity."""
    return identity.removeprefix("cluster_").strip().lower()


@dataclass
class Names:
    names: dict[str, str] = field(default_factory=dict)     # fingerprint -> name
    exclude: set[str] = field(default_factory=set)

    def name(self, identity: str) -> str | None:
        return self.names.get(key(identity)) if identity else None

    def excluded(self, identity: str) -> bool:
        return bool(identity) and key(identity) in self.exclude


def load(path: str | Path | None, *, stage: str | None = None, config_key: str = "names") -> Names:
    """Read a names.yaml; a missing or malformed file is a StageConfigError naming it."""
    if not path:
        return Names()
    import yaml
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise StageConfigError(f"names file not found: {path}; write one (see `pipeline-tasks clusters`)",
                               stage=stage, key=config_key) from exc
    except (OSError, yaml.YAMLError) as exc:
        raise StageConfigError(f"cannot read names file {path}: {exc}", stage=stage, key=config_key) from exc
    if not isinstance(data, dict) or set(data) - {"names", "exclude"}:
        raise StageConfigError(f"{path}: a names file holds 'names' (fingerprint: name) and 'exclude' (a list)",
                               stage=stage, key=config_key)
    names, exclude = data.get("names") or {}, data.get("exclude") or []
    if not isinstance(names, dict) or not all(isinstance(v, str) and v.strip() for v in names.values()):
        raise StageConfigError(f"{path}: 'names' must map fingerprints to non-empty names", stage=stage,
                               key=config_key)
    if not isinstance(exclude, list):
        raise StageConfigError(f"{path}: 'exclude' must be a list of fingerprints", stage=stage, key=config_key)
    return Names({key(str(k)): v.strip() for k, v in names.items()}, {key(str(e)) for e in exclude})
