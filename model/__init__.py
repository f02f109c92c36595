"""The GPT under ablation. Pure torch: imports nothing else of the project.

The config (`ablate.model.config`) imports no torch; `GPT` loads torch on first use, so that
validating a spec or printing `--help` never pays for it.
"""

from typing import TYPE_CHECKING

from ablate.model.config import ConfigError, GPTConfig, flops_per_token, param_count

if TYPE_CHECKING:  # the checker sees the class; at run time __getattr__ imports it on first use
    from ablate.model.gpt import GPT

__all__ = ["GPT", "GPTConfig", "ConfigError", "param_count", "flops_per_token"]


def __getattr__(name):
    if name == "GPT":
        from ablate.model.gpt import GPT
        return GPT
    raise AttributeError(f"module 'ablate.model' has no attribute {name!r}")
