"""The GPT under ablation. Pure torch: imports nothing else of the project."""

from ablate.model.gpt import GPT, ConfigError, GPTConfig, flops_per_token, param_count

__all__ = ["GPT", "GPTConfig", "ConfigError", "param_count", "flops_per_token"]
