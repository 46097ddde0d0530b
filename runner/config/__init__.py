"""Config schemas, their registration and cross-field validation."""

from runner.config.schema import RunConfig
from runner.config.store import register_configs
from runner.config.validate import ConfigError, validate

__all__ = ["ConfigError", "RunConfig", "register_configs", "validate"]
