r"""What a neural config's train step needs in device memory, without
training.

  python -m tools.memory --config=configs/diffurec.py:dataset=beauty \
    [--config.train.batch_size=1024]

Loads the config's dataset, compiles its train step on abstract inputs
(nothing is initialised or trained) and prints XLA's account of one
device's memory (`jaxrec.train.memory`): the arguments (train state and
batch), the temporaries, and the peak (their sum, less what donation
shares). A run compiles the same step before it restores or trains
anything and refuses to start above
`train.max_memory_bytes` (0: the device's memory); the last column says
whether this config would. Linear models state their items x items need in
their own configs (`model.max_dense_bytes`).
"""

from __future__ import annotations

import jax
from absl import app
from ml_collections import config_flags

from jaxrec import models
from jaxrec.study import report
from jaxrec.train import fit_linear, loop, memory

_CONFIG = config_flags.DEFINE_config_file('config', lock_config=True)

MIB = 2.0**20


def row(config) -> dict:
  """The table row of `config`: its train step's memory per device."""
  name = config.model.name
  if name not in models.NEURAL_MODELS:
    raise app.UsageError(
      f'{name} is not a neural model (those: {sorted(models.NEURAL_MODELS)});'
      ' a linear model states its items x items need in its config and'
      ' refuses above model.max_dense_bytes'
    )
  split = fit_linear.load_split(config)
  need = loop.train_step_memory(config, split)
  limit = int(config.train.get('max_memory_bytes', 0))
  try:
    memory.check(need, limit, config.model.name)
    verdict = 'yes'
  except memory.MemoryLimitError:
    verdict = 'no: refused'
  shown = limit or memory.device_capacity()
  return {
    'model': config.model.name,
    'dataset': config.dataset,
    'batch': int(config.train.batch_size),
    'devices': jax.device_count(),
    'arguments MiB': need.arguments / MIB,
    'temporaries MiB': need.temporaries / MIB,
    'peak MiB': need.peak / MIB,
    'limit MiB': None if shown is None else shown / MIB,
    'fits': verdict,
  }


def main(argv):
  del argv
  r = row(_CONFIG.value)
  print(report.markdown_table([r], tuple(r)))


if __name__ == '__main__':
  app.run(main)
