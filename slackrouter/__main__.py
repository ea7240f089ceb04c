import sys

from slackrouter.cli import main

sys.exit(main())
