"""jaxrec: diffusion recommenders and tuned baselines in JAX, one protocol."""

import setuptools

setuptools.setup(
  name='jaxrec',
  version='0.1.0',
  description=(
    'Diffusion-based recommenders and tuned baselines in JAX under one'
    ' leak-free full-ranking protocol.'
  ),
  long_description=open('README.md', encoding='utf-8').read(),
  long_description_content_type='text/markdown',
  python_requires='>=3.11',
  packages=setuptools.find_packages(include=['jaxrec', 'jaxrec.*']),
  # The native CPU top-k is compiled from source on first use.
  package_data={'jaxrec.native': ['topk.cc']},
  # Lower bounds are the versions the test suite was run with.
  install_requires=[
    'jax>=0.10.2',
    'flax>=0.12.8',
    'optax>=0.2.8',
    'orbax-checkpoint>=0.12.8',
    'numpy>=2.4.6',
    'scipy>=1.17.1',
    'scikit-learn>=1.9.1',
    'ml-collections>=1.1.0',
    'absl-py>=2.5.1',
    'chex>=0.1.92',
    'tensorboardX>=2.6.5',
    'tqdm>=4.70.1',
  ],
  extras_require={
    'test': ['pytest>=9.2', 'pytest-xdist>=3.8', 'ruff>=0.17'],
  },
)
