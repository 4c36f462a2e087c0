"""Forward + backward time of every norm against PyTorch's native layer, its formula and torch.compile.

See normlab.bench.norms and docs/performance.md.
"""

from normlab.bench.norms import main

if __name__ == "__main__":
    main()
