import sys

from paramdoctor.cli.app import main

sys.exit(main())
