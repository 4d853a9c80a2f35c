from sisr.cli.main import main

raise SystemExit(main())
