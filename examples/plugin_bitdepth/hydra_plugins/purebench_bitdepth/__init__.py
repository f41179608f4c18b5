"""Hydra discovers this search-path plugin and adds the package's configs to every composition."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class BitDepthSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="purebench-bitdepth", path="pkg://purebench_bitdepth.conf")
