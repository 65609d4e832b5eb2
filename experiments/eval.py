r"""Re-evaluates a workdir's best checkpoint on valid and test.

  python -m experiments.eval --workdir=runs/sasrec-beauty

Reads the run's own config.json, restores checkpoints/best, ranks valid and
test through the protocol and writes eval.json beside results.json. It
re-measures the state validation selected; it selects nothing.
`--batch_mean=512` also prints test as the official DiffuRec / ADRec code
averages it.
"""

import json

from absl import app, flags

from jaxrec.train import loop, writer

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)
_BATCH_MEAN = flags.DEFINE_integer(
  'batch_mean',
  0,
  'N > 0: also the test metrics as means of per-batch means over N users'
  ' (the DiffuRec / ADRec official averaging, N = 512).',
  lower_bound=0,
)


def main(argv):
  del argv
  writer.quiet_orbax()
  out = loop.evaluate_best(_WORKDIR.value, _BATCH_MEAN.value)
  keys = ('step', 'valid', 'test', 'test_batch_mean')
  print(json.dumps({k: out[k] for k in keys if k in out}, indent=1))


if __name__ == '__main__':
  app.run(main)
