"""Compatibility with the original datago Python API.

from datago import datago
client = datago.GetClientFromJSON(json.dumps(config))
client.Start()
sample = client.GetSample()   # a Sample (sample.ID, sample.Image), or None at the end
client.Stop()
"""

from __future__ import annotations

from . import SourceTypeDB, SourceTypeFileSystem
from .client import Client
from .sample import Sample

__all__ = ["DatagoClient", "GetClientFromJSON", "SourceTypeDB", "SourceTypeFileSystem"]


class DatagoClient(Client):
    """A :class:`~datago.Client` with the method names of the original datago."""

    def Start(self) -> None:  # noqa: N802
        self.start()

    def GetSample(self) -> Sample | None:  # noqa: N802
        return self.get_sample()

    def Stop(self) -> None:  # noqa: N802
        self.stop()


def GetClientFromJSON(config_json: str) -> DatagoClient:  # noqa: N802
    """A client configured by the JSON text ``config_json`` (raises ConfigError when invalid)."""
    return DatagoClient(config_json)
