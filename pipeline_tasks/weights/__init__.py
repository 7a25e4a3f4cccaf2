"""Model weights: the catalogue of known models, the verified model cache, fetching into it, and
the optional packages the model backends need. See docs/models.md."""
