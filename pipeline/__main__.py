"""`python -m pipeline` is the same entry point as the `moving-square` console script."""
from pipeline.cli import main

raise SystemExit(main())
