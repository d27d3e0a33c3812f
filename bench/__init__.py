"""GridWatch edge benchmarks: ``python -m bench [detector|pipeline|gating|accuracy]`` from the repo root."""
