r"""Re-evaluates a workdir's best checkpoint on valid and test.

  python -m experiments.eval --workdir=runs/sasrec-beauty

Reads the run's own config.json, restores checkpoints/best, ranks valid and
test through the protocol and writes eval.json beside results.json. It
re-measures the state validation selected; it selects nothing.
"""

import json

from absl import app, flags

from jaxrec.train import loop, writer

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)


def main(argv):
  del argv
  writer.quiet_orbax()
  out = loop.evaluate_best(_WORKDIR.value)
  print(json.dumps({k: out[k] for k in ('step', 'valid', 'test')}, indent=1))


if __name__ == '__main__':
  app.run(main)
