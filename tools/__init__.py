"""Development-only code: training the embedded model, tiny test models, the single-file
converter, the child-daemon recipe. Not shipped in the wheel; imported from the repository
root by make targets, tests and benchmarks."""
