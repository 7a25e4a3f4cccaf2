"""Character segmentation and clustering helpers: model backends, instance splitting, embedders,
contact sheets and scoring (one concern per module). Heavy libraries are imported lazily."""
