"""What a compiled train step needs in device memory, and the refusal above
a limit.

XLA states the need of a compiled program exactly: its arguments (the train
state and the batch), its outputs and its temporaries, less what a donated
argument shares with an output (`Compiled.memory_analysis()`). Under data
parallelism the program is per device, and so is the figure. A run
compiles its step on abstract inputs before it restores, pre-trains or
trains anything, and refuses to start when that figure exceeds
`train.max_memory_bytes` (0: the device's own memory), so a config too
large for a machine fails at once with the number it would need, not with
an out-of-memory kill after hours of queueing; `tools/memory.py` prints
the figure for any config without training.
"""

from __future__ import annotations

import dataclasses
import os

import jax

GIB = 2.0**30


class MemoryLimitError(ValueError):
  """A run's train step would need more memory than it may use."""


@dataclasses.dataclass(frozen=True)
class StepMemory:
  """Bytes per device of one compiled program (`Compiled.memory_analysis`).

  Attributes:
    arguments: the inputs (train state, batch, key).
    outputs: the results (the new state, metrics).
    temporaries: XLA's scratch (activations kept for the backward pass,
      gradients, ...).
    aliased: output bytes written in place of a donated argument.
    peak: what the program allocates: arguments + outputs - aliased +
      temporaries (XLA's temporary size already shares buffers whose lives
      do not overlap). Not `peak_memory_in_bytes`, which on CPU leaves the
      temporaries out.
  """

  arguments: int
  outputs: int
  temporaries: int
  aliased: int
  peak: int

  @classmethod
  def of(cls, compiled) -> StepMemory:
    stats = compiled.memory_analysis()
    if stats is None:  # a backend without the analysis
      raise NotImplementedError(
        f'{jax.default_backend()} reports no memory analysis'
      )
    args = int(stats.argument_size_in_bytes)
    outs = int(stats.output_size_in_bytes)
    temps = int(stats.temp_size_in_bytes)
    alias = int(stats.alias_size_in_bytes)
    return cls(args, outs, temps, alias, args + outs - alias + temps)

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)

  def describe(self) -> str:
    return (
      f'{self.peak / GIB:.3f} GiB per device (arguments'
      f' {self.arguments / GIB:.3f}, outputs {self.outputs / GIB:.3f} of'
      f' which {self.aliased / GIB:.3f} in place, temporaries'
      f' {self.temporaries / GIB:.3f})'
    )


def device_capacity(device: jax.Device | None = None) -> int | None:
  """The memory one device may use, in bytes, or None where unknown.

  Accelerators report their allocator's limit. CPU devices are the host:
  its physical memory, shared by the host's CPU devices (several when
  `--xla_force_host_platform_device_count` splits it).
  """
  device = device or jax.local_devices()[0]
  if device.platform != 'cpu':
    stats = device.memory_stats() or {}
    limit = stats.get('bytes_limit')
    return int(limit) if limit else None
  try:
    host = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError):
    return None
  return host // len(jax.local_devices(backend='cpu'))


def check(need: StepMemory, limit: int, what: str) -> None:
  """Raises MemoryLimitError when `need` exceeds `limit` bytes.

  Args:
    need: the step's memory.
    limit: `train.max_memory_bytes`; 0 for the device's capacity (and no
      check where that is unknown); negative is an error.
    what: names the program in the message (model, batch size).
  """
  if limit < 0:
    raise ValueError(f'train.max_memory_bytes={limit} is negative')
  source = 'train.max_memory_bytes'
  if limit == 0:
    limit = device_capacity()
    source = f'the memory of {jax.local_devices()[0]}'
    if limit is None:
      return
  if need.peak > limit:
    raise MemoryLimitError(
      f'{what} would need {need.describe()}, over the limit of'
      f' {limit / GIB:.3f} GiB ({limit} bytes) set by {source}. Lower'
      ' train.batch_size or the model size, or use a device with more'
      ' memory (with several devices the batch is split over them).'
    )
