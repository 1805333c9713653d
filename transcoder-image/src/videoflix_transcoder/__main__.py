import sys

from videoflix_transcoder.cli import main

sys.exit(main())
