"""Which axes a norm reduces, and why native and hand-written results differ. See normlab.norms.explain."""

import sys

from normlab.norms.explain import main

if __name__ == "__main__":
    sys.exit(main())
