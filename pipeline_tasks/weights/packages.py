"""Optional packages a config needs, checked when the pipeline is validated (not after minutes of
work): `importlib.util.find_spec` says whether a package is installed without importing it."""
from __future__ import annotations

import importlib.util

from ..errors import MissingPackageError


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(needs: dict[str, str], what: str, extra: str, stage: str | None = None, key: str | None = None) -> None:
    """Raise a `MissingPackageError` naming every package of `needs` (import name → pip name) that
    is missing for `what` (e.g. "model 'sam2'"), and the pipeline-tasks extra that installs it."""
    missing = [pip for module, pip in needs.items() if not installed(module)]
    if missing:
        raise MissingPackageError(f"{what} needs the Python package{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(missing)}, not installed here: install pipeline-tasks[{extra}] "
                               f"(or pip install {' '.join(missing)})", stage=stage, key=key)


# face detectors (clustering's and training_data_prep's `face_detector`): their packages and extra
FACE_DETECTORS = {"animeface": ({"animeface": "animeface"}, "characters"),
                  "mtcnn": ({"torch": "torch", "facenet_pytorch": "facenet-pytorch"}, "ml")}


def require_face_detector(detector: str, stage: str | None = None) -> None:
    needs, extra = FACE_DETECTORS[detector]
    require(needs, f"face_detector '{detector}'", extra, stage=stage, key="face_detector")
