r"""One Markdown table of finished runs: mean +- std over their seeds.

  python -m experiments.table runs/adrec-adrec-beauty-seeds \
    runs/sasrec-adrec-beauty-seeds runs/diffurec-adrec-beauty-seeds

Each argument is a run's workdir or an `experiments.seeds` root (its
finished seed<k>/ runs are summarized, also while later seeds still run),
or the chosen point's folder of an `experiments.sweep` (column 'tuned').
"""

from absl import app, flags

from jaxrec.study import report

_METRICS = flags.DEFINE_list(
  'metrics', ['hr@10', 'hr@20', 'ndcg@10', 'ndcg@20'], 'Test metrics shown.'
)


def main(argv):
  rows = [report.run_row(w, _METRICS.value) for w in argv[1:]]
  # 'tuned': the point an experiments.sweep chose, for its rows.
  tuned = ('tuned',) if any('tuned' in r for r in rows) else ()
  columns = ('model', 'dataset', 'seeds', 'quirks', *tuned, *_METRICS.value)
  print(report.markdown_table(rows, columns))


if __name__ == '__main__':
  app.run(main)
