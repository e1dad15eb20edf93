"""`python -m conveyor.operator`: the same as `conveyor-operator`."""

from conveyor.operator import main

raise SystemExit(main())
