"""`python -m nmt ...` is `nmt ...` (and works under torchrun)."""

from nmt.cli import main

raise SystemExit(main())
