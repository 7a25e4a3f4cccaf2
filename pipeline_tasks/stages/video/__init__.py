"""Video helpers shared by the video stage types (one concern per module).

`render` (the synthetic cartoon and its exact masks), `encode` (streaming H.264 writer), `rle` and
`ground_truth` (mask encoding; the ground-truth file), `decode` (opening with clear errors,
streaming threaded decode, seeking sampler, decode-ahead thread), `scene_detect` (PySceneDetect
detectors fed frame by frame), `selection` (representative frames per scene), `phash`
(near-duplicate removal), `image_writer` (quality -> format, off-thread atomic writes), `metrics`
(scene-cut scoring).
"""
