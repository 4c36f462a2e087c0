"""Side-by-side stylizations of several style runs (e.g. one per norm). See normlab.report.style_grid.

python scripts/style_grid.py logs/multiruns/<sweep>/* --output style_norms.png
"""

import sys

from normlab.report.style_grid import main

if __name__ == "__main__":
    sys.exit(main())
