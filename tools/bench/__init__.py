"""Benchmarks: the service against its peers on the same clips (`benchmark`, with `peers` run in
their own processes and `report` for tables and plots), and live streams in real time (`stream`)."""
