from mua.cli import main

raise SystemExit(main())
