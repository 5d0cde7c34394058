"""Development and single-host tooling, apart from production code: embedded Postgres and Redis, the
``exsync run`` supervisor, the demo and the sandbox launcher. Imported by the CLI and the tests only."""
