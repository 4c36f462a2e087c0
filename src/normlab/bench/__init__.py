"""Speed benchmarks, each against the best that PyTorch offers on the same machine in the same run.

- ``norms``: forward + backward of every registered norm against PyTorch's native layer, the
  reference formula and ``torch.compile``, with the memory bandwidth achieved
  (``scripts/bench_norms.py``);
- ``train``: training steps per second through normlab's Lightning path against a hand-written
  PyTorch loop over the same model, data and optimizer (``scripts/bench_train.py``).

Both print a markdown table and write it to a file; ``docs/performance.md`` explains them.
"""
