"""Pipeline -> doit tasks -> runs: compile, output ownership, the stage runtime, manifests, the
durable doit backend, the doit session and reporter, progress display, resource tokens, status and
plan."""
