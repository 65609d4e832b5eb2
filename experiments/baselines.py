r"""The quick-start experiment: several baselines, one table.

  python -m experiments.baselines \
    --config=configs/baselines.py:dataset=ml-100k --workdir=runs/quickstart

Each model is its own run record under <workdir>/<model>/; the table (test
metrics, each model selected on validation) is printed and written to
<workdir>/results.md and results.csv.
"""

import pathlib

from absl import app, flags
from ml_collections import config_flags

from jaxrec.study import report
from jaxrec.train import fit_linear

_CONFIG = config_flags.DEFINE_config_file('config', lock_config=True)
_WORKDIR = flags.DEFINE_string(
  'workdir', 'runs/quickstart', 'Root of the run records.'
)
COLUMNS = (
  'model',
  'selected',
  'HR@10',
  'HR@20',
  'Recall@10',
  'Recall@20',
  'NDCG@10',
  'NDCG@20',
)


def main(argv):
  del argv
  config = _CONFIG.value
  root = pathlib.Path(_WORKDIR.value)
  split, rows = None, []
  for name in config.order:
    model_config = config.models[name].copy_and_resolve_references()
    with model_config.unlocked():
      model_config.dataset = config.dataset
    if split is None:
      split = fit_linear.load_split(model_config)
    res = fit_linear.fit_and_evaluate(model_config, root / name, split)
    test = res['test']['metrics']
    row = {'model': name, 'selected': res['selected']['tag']}
    for k in (10, 20):
      row[f'HR@{k}'] = test[f'hr@{k}']
      row[f'Recall@{k}'] = test[f'recall@{k}']
      row[f'NDCG@{k}'] = test[f'ndcg@{k}']
    rows.append(row)
  table = report.markdown_table(rows, COLUMNS)
  (root / 'results.md').write_text(
    f'Test metrics on {split.name} ({split.content_hash[:12]}), each model'
    f' selected on validation.\n\n{table}\n'
  )
  (root / 'results.csv').write_text(report.csv_table(rows, COLUMNS))
  print(
    f'\n{split.name}: {split.n_users} users, {split.n_items} items;'
    f' test metrics, each model selected on validation'
    f' (records under {root}/)\n'
  )
  print(table)


if __name__ == '__main__':
  app.run(main)
