r"""One Markdown table of finished runs: mean +- std over their seeds.

  python -m experiments.table runs/adrec-adrec-beauty-seeds \
    runs/sasrec-adrec-beauty-seeds runs/diffurec-adrec-beauty-seeds \
    [--baseline=sasrec] [--significance=ttest]

Each argument is a run's workdir or an `experiments.seeds` root (its
finished seed<k>/ runs are summarized, also while later seeds still run),
or the chosen point's folder of an `experiments.sweep` (column 'tuned').
Rows of one model on one dataset that differ in config (say, a longer
patience) say how in column 'differs' (the keys whose values differ among
them; the seed aside).

`--baseline=MODEL` compares every other row with that model's row of the
same dataset, user by user on the test set (`jaxrec.study.significance`:
paired t-test or Wilcoxon signed-rank over users, each user's metric
averaged over seeds; Holm-corrected over every comparison printed). A
metric cell marked '*' differs from the baseline at `--alpha` after the
correction; a second table gives each difference and its p-values.

`--batch_mean=512` prints each metric as the official DiffuRec and ADRec
code average it: the mean of the means of 512 consecutive users (ascending
ids; the last, smaller batch weighs as much as a full one), computed from
the runs' per-user test values. The default is the mean over users. The
paired tests are over users either way.
"""

from absl import app, flags

from jaxrec.study import report, significance

_METRICS = flags.DEFINE_list(
  'metrics', ['hr@10', 'hr@20', 'ndcg@10', 'ndcg@20'], 'Test metrics shown.'
)
_BASELINE = flags.DEFINE_string(
  'baseline', None, 'Model name each dataset is compared with (paired test).'
)
_TEST = flags.DEFINE_enum(
  'significance', 'ttest', significance.TESTS, 'Paired test over users.'
)
_ALPHA = flags.DEFINE_float('alpha', 0.05, 'Family-wise error rate (Holm).')
_BATCH_MEAN = flags.DEFINE_integer(
  'batch_mean',
  0,
  'N > 0: metrics as means of per-batch means over N consecutive users (the'
  ' DiffuRec / ADRec official averaging, N = 512); 0: means over users.',
  lower_bound=0,
)


def _comparisons(dirs, rows) -> list[dict]:
  """Each non-baseline row against its dataset's baseline row, per metric."""
  base = {}
  for w, row in zip(dirs, rows, strict=True):
    if row['model'] == _BASELINE.value:
      if row['dataset'] in base:
        raise app.UsageError(
          f'two {_BASELINE.value} rows on {row["dataset"]}:'
          f' {base[row["dataset"]]} and {w}; pass one'
        )
      base[row['dataset']] = w
  if not base:
    raise app.UsageError(f'--baseline={_BASELINE.value}: no row of that model')
  out = []
  for i, (w, row) in enumerate(zip(dirs, rows, strict=True)):
    b = base.get(row['dataset'])
    if b is None or b == w:
      continue
    for metric in _METRICS.value:
      c = significance.paired(w, b, metric, _TEST.value)
      out.append({'row': i, 'metric': metric, **c})
  adjusted = significance.holm([c['p'] for c in out])
  for c, p in zip(out, adjusted, strict=True):
    c['p_holm'] = float(p)
  return out


def main(argv):
  dirs = argv[1:]
  rows = [report.run_row(w, _METRICS.value, _BATCH_MEAN.value) for w in dirs]
  comparisons = _comparisons(dirs, rows) if _BASELINE.value else []
  for c in comparisons:
    if c['p_holm'] < _ALPHA.value:
      rows[c['row']][c['metric']] += ' *'
  # 'differs': the config keys that set apart rows of one model on one
  # dataset (e.g. train.patience=12 beside the default), so that two such
  # rows can be told apart.
  groups = {}
  for i, row in enumerate(rows):
    groups.setdefault((row['model'], row['dataset']), []).append(i)
  for members in groups.values():
    if len(members) < 2:
      continue
    configs = [report.run_config(dirs[i]) for i in members]
    for i, d in zip(members, report.config_differences(configs), strict=True):
      if d:
        rows[i]['differs'] = d
  # 'tuned': the point an experiments.sweep chose, for its rows.
  extra = tuple(c for c in ('tuned', 'differs') if any(c in r for r in rows))
  columns = ('model', 'dataset', 'seeds', 'quirks', *extra, *_METRICS.value)
  print(report.markdown_table(rows, columns))
  if _BATCH_MEAN.value:
    print(
      f'\nMetrics: means of per-batch means over {_BATCH_MEAN.value}'
      ' consecutive users (the official DiffuRec / ADRec averaging), not'
      ' means over users.'
    )
  if comparisons:
    print(
      f'\n* differs from {_BASELINE.value} on the same dataset at'
      f' {_ALPHA.value} ({_TEST.value} over test users, Holm-corrected over'
      f' {len(comparisons)} comparisons):\n'
    )
    lines = [
      {
        'model': rows[c['row']]['model'],
        'dataset': rows[c['row']]['dataset'],
        **(
          {'differs': rows[c['row']].get('differs', '-')}
          if 'differs' in extra
          else {}
        ),
        'metric': c['metric'],
        'diff': f'{c["diff"]:+.4f}',
        'relative': f'{100 * c["rel"]:+.1f} %',
        'users': c['users'],
        'p': f'{c["p"]:.2g}',
        'p (Holm)': f'{c["p_holm"]:.2g}',
      }
      for c in comparisons
    ]
    print(report.markdown_table(lines, list(lines[0])))


if __name__ == '__main__':
  app.run(main)
