"""Stage-type registry: built-ins (imported lazily), `register_stage_executor`, and the
`pipeline_tasks.stages` entry-point group for third-party packages."""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator, MutableMapping

from ..errors import StageConfigError
from ..executor import StageExecutor

ENTRY_POINT_GROUP = "pipeline_tasks.stages"

# type name -> "module:Class"; modules are imported only when a pipeline uses the type, so a
# pipeline of custom stages never pays for PyAV or torch.
BUILTIN_STAGES: dict[str, str] = {
    "custom": "pipeline_tasks.stages.custom:CustomExecutor",
    "synthetic_video": "pipeline_tasks.stages.synthetic_video:SyntheticVideoExecutor",
    "frame_extraction": "pipeline_tasks.stages.frame_extraction:FrameExtractionExecutor",
    "segmentation": "pipeline_tasks.stages.segmentation:SegmentationExecutor",
    "clustering": "pipeline_tasks.stages.clustering:ClusteringExecutor",
    "training_data_prep": "pipeline_tasks.stages.training_data_prep:TrainingDataPrepExecutor",
    "evaluate": "pipeline_tasks.stages.evaluate:EvaluateExecutor",
    "report": "pipeline_tasks.report.stage:ReportExecutor",
    "audio_extraction": "pipeline_tasks.stages.audio_extraction:AudioExtractionExecutor",
    "transcription": "pipeline_tasks.stages.transcription:TranscriptionExecutor",
    "subtitle_generation": "pipeline_tasks.stages.subtitle_generation:SubtitleGenerationExecutor",
    "subtitle_index": "pipeline_tasks.stages.subtitle_index:SubtitleIndexExecutor",
    "translation": "pipeline_tasks.stages.translation:TranslationExecutor",
}

_registered: dict[str, type[StageExecutor]] = {}
_loaded: dict[str, type[StageExecutor]] = {}


def register_stage_executor(type_name: str, cls: type[StageExecutor]) -> None:
    """Add (or replace) a stage type for this process. `type_name` may be a `StageType`."""
    type_name = getattr(type_name, "value", type_name)
    if not (isinstance(cls, type) and issubclass(cls, StageExecutor)):
        raise TypeError(f"{cls!r} is not a StageExecutor subclass")
    _registered[type_name] = cls
    _loaded.pop(type_name, None)


def _module_exists(target: str) -> bool:
    module = target.split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _entry_points() -> dict[str, object]:
    from importlib.metadata import entry_points  # 15 ms of imports, needed only for non-builtin types
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_types() -> list[str]:
    names = set(_registered)
    names.update(name for name, target in BUILTIN_STAGES.items() if _module_exists(target))
    names.update(_entry_points())
    return sorted(names)


def _import(target: str) -> type[StageExecutor]:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def get_executor_class(type_name: str) -> type[StageExecutor]:
    """The executor class of a stage type; StageConfigError naming the known types otherwise."""
    if type_name in _registered:
        return _registered[type_name]
    if type_name in _loaded:
        return _loaded[type_name]
    cls = None
    if type_name in BUILTIN_STAGES and _module_exists(BUILTIN_STAGES[type_name]):
        try:
            cls = _import(BUILTIN_STAGES[type_name])
        except ImportError as exc:
            raise StageConfigError(
                f"stage type '{type_name}' needs a package that is not installed: {exc.name or exc}",
                hint="install the project's extras: pip install -e '.[all]'") from exc
    else:
        ep = _entry_points().get(type_name)
        if ep is not None:
            cls = ep.load()
    if cls is None:
        raise StageConfigError(f"unknown stage type '{type_name}'; known types: {', '.join(available_types())}")
    _loaded[type_name] = cls
    return cls


class ExecutorRegistry(MutableMapping):
    """The stage types of this process as a mapping, type name -> executor class: reading a name
    loads its class (`get_executor_class`), setting one registers it (`register_stage_executor`),
    deleting one unregisters a type registered in this process."""

    def __getitem__(self, type_name: str) -> type[StageExecutor]:
        try:
            return get_executor_class(type_name)
        except StageConfigError:
            raise KeyError(type_name) from None

    def __setitem__(self, type_name: str, cls: type[StageExecutor]) -> None:
        register_stage_executor(type_name, cls)

    def __delitem__(self, type_name: str) -> None:
        del _registered[type_name]
        _loaded.pop(type_name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(available_types())

    def __len__(self) -> int:
        return len(available_types())

    def __contains__(self, type_name: object) -> bool:
        return isinstance(type_name, str) and type_name in available_types()
