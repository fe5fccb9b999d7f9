"""Model registry: `conf/model/<name>.yaml` ↔ `MODELS.register("<name>")` in `<name>.py` (families share a module)."""

from progprune_cli.models.base import MODELS, build_model

from progprune_cli.models import (  # noqa: F401,E402  (registers)
    lenet300, lenet5, mlp, mobilenet_v2, resnet18, resnet20, resnet32, resnet56, resnet110, resnet_tiny, simple_cnn,
    two_conv_cnn, vgg11, vgg16,
)

__all__ = ["MODELS", "build_model"]
