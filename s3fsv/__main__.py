import sys

from s3fsv.cli.app import main

sys.exit(main())
