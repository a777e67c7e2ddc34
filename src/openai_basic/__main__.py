import sys

from openai_basic.cli import main

sys.exit(main())
