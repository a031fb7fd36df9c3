from edgelab.cli import main

raise SystemExit(main())
