r"""Repeats one experiment over seeds and prints mean +- std and 95 % CI.

  python -m experiments.seeds --config=configs/sasrec.py:dataset=adrec-beauty \
    --workdir=runs/sasrec-adrec-beauty-seeds --seeds=0,1,2

Each seed runs (and resumes) in <workdir>/seed<k>; <workdir>/seeds.json
holds the per-seed test metrics and their summary. The same command started
in several processes (one per core, say) shares the seeds between them.
"""

from absl import app, flags
from ml_collections import config_flags

from jaxrec.study import report, seeds
from jaxrec.train import writer

_CONFIG = config_flags.DEFINE_config_file('config', lock_config=True)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Root directory.', required=True
)
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds to run.')


def main(argv):
  del argv
  writer.quiet_orbax()
  out = seeds.run_seeds(
    _CONFIG.value, _WORKDIR.value, [int(s) for s in _SEEDS.value]
  )
  rows = [
    {
      'metric': name,
      'mean': s['mean'],
      'std': s['std'],
      '95% CI': f'[{s["ci_low"]:.4f}, {s["ci_high"]:.4f}]',
    }
    for name, s in out['test'].items()
  ]
  print(report.markdown_table(rows, ('metric', 'mean', 'std', '95% CI')))


if __name__ == '__main__':
  app.run(main)
