"""Model code: backbones, heads, training, evaluation, the artifact registry, inference.

No data I/O beyond weights files and artifacts; TensorFlow is imported only here."""

from anigenre.models import quiet as _quiet

_quiet.install()  # before any module here imports Keras or TensorFlow
