"""tests/bench holds a benchmark script, not tests: pytest collects nothing here."""

collect_ignore_glob = ["*"]
