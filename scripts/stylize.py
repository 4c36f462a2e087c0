"""Apply a trained style network to an image file. See normlab.tasks.stylize.

python scripts/stylize.py --ckpt <run>/checkpoints/last.ckpt --input a.jpg --output b.png
"""

import sys

from normlab.tasks.stylize import main

if __name__ == "__main__":
    sys.exit(main())
