"""devloop.yaml: loading and checking it (every error names file:line), and the log filters
it configures.

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.config.loader import (
    CONFIG_NAME,
    KUSTOMIZATION_NAMES,
    BuildSecret,
    ChartConfig,
    Config,
    ConfigError,
    LiveUpdateConfig,
    PortForward,
    ResourceConfig,
    RunStep,
    ServiceConfig,
    load_config,
)
from devloop.config.logfilter import BuildTally, count_probe_lines, probe_matcher, probe_paths

__all__ = [
    "CONFIG_NAME",
    "KUSTOMIZATION_NAMES",
    "BuildSecret",
    "BuildTally",
    "ChartConfig",
    "Config",
    "ConfigError",
    "LiveUpdateConfig",
    "PortForward",
    "ResourceConfig",
    "RunStep",
    "ServiceConfig",
    "count_probe_lines",
    "load_config",
    "probe_matcher",
    "probe_paths",
]
