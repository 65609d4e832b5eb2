r"""Trains one neural model, selected on validation, tested once.

  python -m experiments.train --config=configs/sasrec.py:dataset=beauty \
    --workdir=runs/sasrec-beauty [--config.optim.lr=3e-4] [--fresh]

Re-running the same command on the same workdir resumes from its latest
checkpoint; a different config on an existing workdir is refused with the
differing keys unless --fresh (which moves the old run aside).
"""

from absl import app, flags
from ml_collections import config_flags

from jaxrec.train import loop, writer

_CONFIG = config_flags.DEFINE_config_file('config', lock_config=True)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Run record directory.', required=True
)
_FRESH = flags.DEFINE_boolean(
  'fresh', False, 'Move an existing run with another config aside.'
)


def main(argv):
  del argv
  writer.quiet_orbax()
  loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value, fresh=_FRESH.value)


if __name__ == '__main__':
  app.run(main)
