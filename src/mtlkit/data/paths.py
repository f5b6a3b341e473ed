"""Where the data layer keeps and looks for files."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PathLike = str | os.PathLike[str]
"""A path given as a string or path object."""

DATA_DIR_ENV = "MTLKIT_DATA"
"""The environment variable that overrides the default data dir."""

DEBIAN_DATASETS_ROOT = Path("/usr/share/datasets")
"""Where Debian's ``dataset-*`` packages install datasets, one folder per dataset."""


def resolve_data_dir(data_dir: PathLike | None = None) -> Path:
    """The data dir: ``data_dir`` if given, else ``$MTLKIT_DATA``, else the user cache dir.

    Always an absolute path (a relative one is taken from the current folder), so that tools run
    in other folders (``pip download``, ``apt-get download``) write where it says. The folder is
    not created here; fetching and caching create what they write.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser().absolute()
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser().absolute()
    return Path(platformdirs.user_cache_dir("mtlkit")).absolute()
