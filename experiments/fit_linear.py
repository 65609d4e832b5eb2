r"""Fits one closed-form / neighbourhood model, selected on validation.

  python -m experiments.fit_linear --config=configs/ease.py:dataset=beauty \
    --workdir=runs/ease-beauty [--config.grid.l2='(100.0, 500.0)']
"""

from absl import app, flags
from ml_collections import config_flags

from jaxrec.train import fit_linear

_CONFIG = config_flags.DEFINE_config_file('config', lock_config=True)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Run record directory.', required=True
)


def main(argv):
  del argv
  fit_linear.fit_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
