"""Model code: backbones, heads, training, evaluation, the artifact registry (not yet built)."""
