"""Models streammat provides itself: the model store and the built-in selfie sessions.

- ``store``: model home, ``pull`` of the built-in models, ``list_models``.
- ``selfie``: MediaPipe selfie segmentation as rembg sessions (``selfie``, ``selfie-landscape``).
- ``tflite_import``: the TfLite -> ONNX importer those models are converted with.

Submodules are imported on use (they pull in rembg / onnx).
"""
