"""Training steps per second through normlab's Lightning path against a hand-written PyTorch loop.

See normlab.bench.train and docs/performance.md.
"""

from normlab.bench.train import main

if __name__ == "__main__":
    main()
