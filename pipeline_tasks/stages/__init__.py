"""Stage types. Each module holds one stage type (or one family's shared backend package)."""
from ..executor import StageContext, StageExecutor

__all__ = ["StageContext", "StageExecutor"]
