"""Host-side data layer: readers, preprocessing, splits and the registry.

`get_split(name)` is the entry point; `DATASETS` lists the names.
"""

from jaxrec.data import preprocess, readers, registry, splits, types
from jaxrec.data.readers import DataError
from jaxrec.data.registry import DATASETS, get_split

__all__ = [
  'DATASETS',
  'DataError',
  'get_split',
  'preprocess',
  'readers',
  'registry',
  'splits',
  'types',
]
