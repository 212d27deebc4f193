"""Config model, loading and validation (pure: no I/O beyond reading the file)."""

from controller.core.config.load import (
    ConfigError,
    LoadedConfig,
    Problem,
    load_config,
    load_config_text,
)
from controller.core.config.model import (
    Analysis,
    CanaryRef,
    Config,
    DeploymentRef,
    Metric,
    Policy,
    Rollout,
    Shifting,
    Side,
    Step,
)

__all__ = [
    "Analysis",
    "CanaryRef",
    "Config",
    "ConfigError",
    "DeploymentRef",
    "LoadedConfig",
    "Metric",
    "Policy",
    "Problem",
    "Rollout",
    "Shifting",
    "Side",
    "Step",
    "load_config",
    "load_config_text",
]
