import sys

from gancli.cli import main

sys.exit(main())
