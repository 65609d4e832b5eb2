r"""Tunes a neural config on validation over a grid; tests the choice.

  python -m experiments.sweep --config=configs/sasrec.py:dataset=adrec-beauty \
    --workdir=runs/sasrec-adrec-beauty-sweep \
    --grid=model.dropout=0.2,0.5 --grid=model.dim=64,128 --seeds=0,1,2

Each point trains at the first seed in <workdir>/<point>/seed<k> and is
selected on validation (`eval.select`); test is never ranked for a point
that is not chosen. The best point is then run over --seeds (its first
seed's run is reused and only tested). Re-running resumes every run; the
same command started in several processes shares the points and seeds.
`python -m experiments.table <workdir>/<chosen point>` gives its table row.
"""

from absl import app, flags
from ml_collections import config_flags

from jaxrec.study import report, sweep
from jaxrec.train import writer

_CONFIG = config_flags.DEFINE_config_file('config', lock_config=True)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Root directory.', required=True
)
_GRID = flags.DEFINE_multi_string(
  'grid', [], 'key=v1,v2,... over a dotted config key; repeat per key.'
)
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Seeds of the chosen point.')


def main(argv):
  del argv
  writer.quiet_orbax()
  grid = sweep.parse_grid(_GRID.value)
  out = sweep.run_sweep(
    _CONFIG.value, _WORKDIR.value, grid, [int(s) for s in _SEEDS.value]
  )
  select = out['select']
  rows = [
    {
      'point': p['tag'],
      f'valid {select}': p['valid'],
      'epoch': f'{p["selected_epoch"]:.0f}',
      'chosen': '*' if p['tag'] == out['chosen'] else '',
    }
    for p in out['points']
  ]
  print(report.markdown_table(rows, tuple(rows[0])))
  test = [
    {'metric': name, 'mean': s['mean'], 'std': s['std']}
    for name, s in out['seeds']['test'].items()
  ]
  print(f'\ntest of {out["chosen"]}, seeds {out["seeds"]["seeds"]}:')
  print(report.markdown_table(test, ('metric', 'mean', 'std')))


if __name__ == '__main__':
  app.run(main)
