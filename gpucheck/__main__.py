import sys

from gpucheck.cli import main

sys.exit(main())
