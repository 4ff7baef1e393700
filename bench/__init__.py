"""The benches: each answers one question against a baseline measured in the same run. Run one as a
module from the repository root, `.venv/bin/python -m bench.<name> [--quick] [--out DIR]`; bench/README.md
lists them."""
