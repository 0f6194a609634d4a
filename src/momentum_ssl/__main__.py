import sys

from .plumbing.compute import apply_environment

# Before anything imports torch: the kernels and thread pools are chosen when the libraries load.
apply_environment(sys.argv[1:])

from .cli import main  # noqa: E402

raise SystemExit(main())
