"""The package version (read by pyproject.toml and by the spec cache key)."""
__version__ = "0.1.0"
