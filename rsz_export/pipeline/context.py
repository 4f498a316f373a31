"""What every stage of one build reads, made once under the folder's lock: the spec, the folder, the stage keys,
the previous manifest (None with ``--force`` or none there) and the log. Each stage is ``stage(ctx, inputs)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rsz_export.artifacts.manifest import Manifest
from rsz_export.interface import Log
from rsz_export.pipeline.keys import StageKeys

if TYPE_CHECKING:
    from rsz_export.pipeline.run import BuildSpec


@dataclass(frozen=True)
class BuildContext:
    """One build's shared, read-only facts (``pipeline.run`` makes it; the stages take it first)."""

    spec: BuildSpec
    out_dir: Path
    keys: StageKeys
    previous: Manifest | None
    log: Log

    @property
    def recorded(self) -> StageKeys | None:
        """The previous manifest's keys, to compare stage by stage with ``keys``."""
        return StageKeys.recorded(self.previous)
