"""Model registry: `conf/model/<name>.yaml` ↔ `MODELS.register("<name>")` in `<name>.py`."""

from progprune_cli.models.base import MODELS, build_model

from progprune_cli.models import mlp, resnet_tiny, simple_cnn, two_conv_cnn  # noqa: F401,E402  (registers)

__all__ = ["MODELS", "build_model"]
