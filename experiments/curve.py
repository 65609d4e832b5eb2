r"""The validation curve of a run, finished or still training.

  python -m experiments.curve runs/diffurec-beauty [--metrics=hr@10,ndcg@10]

One line per validation (step, epoch, the train loss logged there, the
validation metrics; '*' marks a new best on the selection metric), then the
run's state: selected step and test if finished, else the latest checkpoint
a resume continues from. Reads metrics.jsonl, so it can be run beside the
training process. `--csv` prints CSV at full precision instead.
"""

import json
import pathlib

from absl import app, flags

from jaxrec.study import report
from jaxrec.train import record

_METRICS = flags.DEFINE_list(
  'metrics', [], 'Validation metrics shown (default: the selection metric).'
)
_CSV = flags.DEFINE_boolean('csv', False, 'CSV instead of Markdown.')


def _state(workdir: pathlib.Path, last: dict | None) -> str:
  results = workdir / 'results.json'
  if results.exists():
    r = json.loads(results.read_text())
    test = r.get('test', {}).get('metrics')
    shown = {k: round(v, 4) for k, v in (test or {}).items() if '@' in k}
    return (
      f'finished: selected step {r["selected_step"]} (epoch'
      f' {r["selected_epoch"]:.1f}) of {r["train_steps_total"]};'
      f' test {json.dumps(shown) if test else "not run"}'
    )
  latest = workdir / 'checkpoints' / 'latest'
  steps = [int(p.name) for p in latest.glob('*') if p.name.isdigit()]
  held = record.lock_holder(workdir)
  busy = ''
  if held is not None:
    who = f'process {held["pid"]} on {held["host"]}'
    busy = {
      True: f'; training now ({who})',
      False: f'; stopped ({who} is gone)',
    }
    busy = busy.get(held['alive'], f'; lock held by {who}')
  logged = ''
  if last is not None:
    logged = (
      f'; last logged step {last["step"]} (epoch {last["epoch"]:.1f}),'
      f' train loss {last["train/loss"]:.4f}'
    )
  if not steps:
    return f'not finished; no checkpoint yet{logged}{busy}'
  return f'not finished; latest checkpoint step {max(steps)}{logged}{busy}'


def main(argv):
  for arg in argv[1:]:
    workdir = pathlib.Path(arg)
    try:
      rows, select, last = report.learning_curve(workdir, _METRICS.value)
    except KeyError as e:  # a metric name the run never logged
      raise app.UsageError(e.args[0]) from e
    columns = list(rows[0]) if rows else ['step', f'valid/{select}']
    table = report.csv_table if _CSV.value else report.markdown_table
    print(f'{workdir} (selected on valid {select})')
    print(table(rows, columns))
    print(_state(workdir, last))


if __name__ == '__main__':
  app.run(main)
