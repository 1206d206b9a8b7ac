"""Runs in the MediaPipe venv (`make mediapipe`), never with tfopt: MediaPipe Tasks' own API on
a .tflite, as a mobile app uses it. Prints one JSON document.

    python mediapipe_tool.py classify MODEL IMAGES.npy   # uint8 N x H x W x 3 -> top 3 per image
"""

import json
import sys

import numpy as np


def classify(model: str, images: str) -> list:
    import mediapipe as mp
    from mediapipe.tasks import python as tasks
    from mediapipe.tasks.python import vision

    options = vision.ImageClassifierOptions(
        base_options=tasks.BaseOptions(model_asset_path=model), max_results=3
    )
    out = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image in np.load(images):
            frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
            result = classifier.classify(frame)
            out.append(
                [
                    {"index": c.index, "name": c.category_name, "score": float(c.score)}
                    for c in result.classifications[0].categories
                ]
            )
    return out


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    assert command == "classify", command
    print(json.dumps(classify(*args)))
