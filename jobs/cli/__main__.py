import sys

from anigenre.jobs.cli import main

sys.exit(main())
