"""Custom layers that ship inside saved models. Registered, so ``safe_mode`` loading works
without Lambda layers (which safe mode refuses, rightly: they deserialize code)."""

from __future__ import annotations

import keras
from keras import ops

# keras.applications' "caffe" preprocessing: BGR order, ImageNet channel means removed.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="anigenre")
class CaffePreprocess(keras.layers.Layer):
    """RGB 0..255 -> BGR minus the ImageNet mean, as ResNet50's ImageNet weights expect."""

    def call(self, inputs):
        bgr = ops.flip(inputs, axis=-1)
        return bgr - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=bgr.dtype)
