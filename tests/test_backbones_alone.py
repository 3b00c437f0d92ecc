"""MobileNetV2 1.0 alone, int8 by our quantization: the pair's main network, no companion."""

from anigenre.models.backbones import spec_for


def test_the_single_network_int8_spec_keeps_block_16_and_drops_the_companion():
    alone, pair = spec_for("mobilenet_v2_1.0_ptq_int8"), spec_for("mobilenet_v2_1.0_with_0.35_int8")
    assert alone.quantize and alone.companion is None
    assert alone.taps == pair.taps == ("block_16_project_BN",)
    assert alone.default_size == pair.default_size
