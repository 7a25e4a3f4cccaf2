"""Video helpers shared by the video stage types.

One concern per module: `render` (the synthetic cartoon), `encode` (streaming H.264 writer),
`ground_truth` (the ground-truth file and its mask RLE), `decode` (opening and streaming decode with
clear errors), `scene_detect` (PySceneDetect detectors fed frame by frame), `selection`
(representative frames per scene), `phash` (near-duplicate removal), `metrics` (scene-cut scoring).
"""
