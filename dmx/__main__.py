import sys

from dmx.cli import main

sys.exit(main())
