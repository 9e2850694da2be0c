"""Config and device profiles: typed schemas, migrations, file loading with line-accurate errors."""

from edge.config.load import load_config, load_profile, shipped_profiles
from edge.config.schema import AgentConfig, Profile

__all__ = ["AgentConfig", "Profile", "load_config", "load_profile", "shipped_profiles"]
