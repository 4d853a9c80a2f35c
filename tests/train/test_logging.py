"""Run logger: an unusable run folder is a clean error, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from sisr.errors import ConfigError
from sisr.train.logging import RunLogger


def test_run_folder_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    for out in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        with pytest.raises(ConfigError, match=r"taken.*cannot use as the run folder"):
            RunLogger(out, progress=False, tensorboard=False)
