"""The wheel carries the Hydra configs, which stay at the repository's top level for users to read and edit.

``conf/`` (with ``conf/experiment``, the link to ``experiments/``, followed) is copied to ``purebench/conf``
in the build, where :mod:`purebench.config_paths` finds it once installed. Editable installs skip the copy:
they read the checkout's ``conf/`` directly, so an edited recipe takes effect without reinstalling.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildPyWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "purebench" / "conf"
        shutil.rmtree(target, ignore_errors=True)  # a file deleted from conf/ leaves no stale copy behind
        shutil.copytree(CONF, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
