"""The GPUs one run meters: their NVML indices and labels, the energy source, a read error."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from runner.measure.nvml import (
    GpuReading,
    GpuWindowEnergy,
    NvmlError,
    NvmlLike,
    cuda_to_nvml_indices,
    make_gpu_source,
    open_nvml,
)

log = logging.getLogger(__name__)


class MeteredGpus:
    """The run's GPUs by CUDA index, read through NVML (counter or power samples).

    ``labels`` key per-GPU figures by CUDA index; ``setup_warnings`` say what opening NVML
    found. The first failed read sets ``error`` and every later reading carries no energy,
    so the GPU figure is reported unknown rather than summed from part of the windows.
    """

    def __init__(
        self,
        cuda: Sequence[int],
        nvml: NvmlLike | None,
        clock: Callable[[], float],
        sample_interval_s: float,
    ) -> None:
        self._clock = clock
        self.cuda = [int(i) for i in cuda]
        self.labels = [str(i) for i in self.cuda]
        self.setup_warnings: list[str] = []
        lib = open_nvml(nvml) if self.cuda else None  # a CPU run never touches NVML
        self.nvml_indices = list(self.cuda)
        if lib is not None:
            try:
                self.nvml_indices, warns = cuda_to_nvml_indices(self.cuda, lib.device_count())
                self.setup_warnings += warns
            except NvmlError as exc:
                self.setup_warnings.append(f"NVML device count failed: {exc}")
                lib = None
        self._source, warns = make_gpu_source(
            lib, self.nvml_indices, self.labels, clock, sample_interval_s
        )
        self.setup_warnings += warns
        self.error: str | None = None

    @property
    def method(self) -> str | None:
        """How GPU energy is obtained; None when nothing is metered."""
        return self._source.method

    def start(self) -> None:
        self._source.start()

    def stop(self) -> None:
        self._source.stop()

    def read(self) -> GpuReading:
        """The clock and, until a read has failed, the GPUs' energy readings."""
        t = self._clock()
        if self.error is None:
            try:
                return self._source.read(t)
            except NvmlError as exc:
                self.error = f"NVML read failed ({exc}): GPU energy unknown"
                log.warning("%s", self.error)
        return GpuReading(t)

    def energy(self, begin: GpuReading, end: GpuReading) -> GpuWindowEnergy:
        """Joules per GPU between two readings; none once a read has failed."""
        if self.error is not None:
            return GpuWindowEnergy(())
        return self._source.energy(begin, end)
