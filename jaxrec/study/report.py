"""Result tables from run records (Markdown now; CSV/LaTeX alongside)."""

from __future__ import annotations

from typing import Sequence


def _cell(value) -> str:
  if isinstance(value, float):
    return f'{value:.4f}'
  return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
  """A GitHub Markdown table of `rows` restricted to `columns`.

  Args:
    rows: one dict per line of the table; a missing key prints as '-'.
    columns: the keys to show, in order; they are the header.

  Returns:
    The table as text, one line per row plus header and rule.
  """
  lines = [
    '| ' + ' | '.join(columns) + ' |',
    '|' + '|'.join('---' for _ in columns) + '|',
  ]
  for row in rows:
    cells = (_cell(row[c]) if c in row else '-' for c in columns)
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def csv_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
  """The same table as CSV text (full precision)."""
  out = [','.join(columns)]
  for row in rows:
    out.append(','.join(str(row.get(c, '')) for c in columns))
  return '\n'.join(out) + '\n'
