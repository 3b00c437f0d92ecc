"""Model code: backbones, heads, training, evaluation, the artifact registry, inference.

No data I/O beyond weights files and artifacts; TensorFlow is imported only here."""
