"""streammat: stream-processing video matting."""
