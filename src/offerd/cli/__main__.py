"""`python -m offerd.cli`: the `offerd` command."""
import sys

from . import main

sys.exit(main())
