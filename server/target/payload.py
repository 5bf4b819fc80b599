"""The random bytes every download is cut from: one in-memory file, made once per target."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from probes.bandwidth import params


@dataclass
class Payload:
    """The random bytes every download is cut from (a memfd: no disk I/O on a Pi's SD card)."""

    file: io.FileIO
    size: int

    @classmethod
    def create(cls, size: int = params.PAYLOAD_FILE_BYTES) -> Payload:
        fd = os.memfd_create("hamletnet-payload")
        os.write(fd, os.urandom(size))
        return cls(io.FileIO(fd, "rb"), size)

    def close(self) -> None:
        self.file.close()
