import sys

from waqtor.cli import main

sys.exit(main())
