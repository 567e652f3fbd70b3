"""The network zoo: baseline and SB variant of every network in ``SB_SPEC.md`` section 4."""

from sbdeploy.models import pyramidnet, resnet_cifar, resnet_imagenet  # noqa: F401  (registers)
from sbdeploy.models._registry import SB_OPTIONS, ModelInfo, check_sb_stages, create_model, list_models, model_info

__all__ = ["SB_OPTIONS", "ModelInfo", "check_sb_stages", "create_model", "list_models", "model_info"]
