"""The on-disk dataset format (version 1).

A dataset is a folder::

    DIR/
      dataset.json      {"format": "aniportrait-dataset", "version": 1, "image_size": R, "face_size": F,
                         "count": N, "source": "...", "face_camera": {...} (optional, how face crops were made)}
      labels.npz        one array per label, row i belongs to ids[i] (numpy .npz, no pickled objects):
                          ids         [N]        str, file stem of image i (unique; letters, digits, '-', '_')
                          camera      [N, 2]     float32  portrait camera (pitch, yaw) in radians, pi/2 = frontal
                          pose        [N, 6, 3]  float32  ZYX Euler offsets of SMPL joints 12..17 from the mean pose
                          betas       [N, 10]    float32  SMPL shape
                          id          [N, 80]    float32  3DMM identity coefficients
                          expression  [N, 64]    float32  3DMM expression coefficients
      images/{id}.png   the portrait, RGB, R x R (an alpha channel, if present, is composited over white)
      faces/{id}.png    the aligned face crop of the same image, RGB, F x F

Labels follow the conventions of the release's keyframe files (see :mod:`aniportrait.render.keyframes`), so that a
label row can drive ``aniportrait render`` directly.
"""

FORMAT = "aniportrait-dataset"
VERSION = 1
META_FILE = "dataset.json"
LABELS_FILE = "labels.npz"
IMAGES_DIR = "images"
FACES_DIR = "faces"
IMAGE_EXT = ".png"

# Label name -> per-row shape.
LABEL_SHAPES = {
    "camera": (2,),
    "pose": (6, 3),
    "betas": (10,),
    "id": (80,),
    "expression": (64,),
}
