import sys

from waqtor.cli.main import main

sys.exit(main())
