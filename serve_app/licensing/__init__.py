"""Licensing: signed keys verified offline (keys), who a request is (auth), what it may do (limits:
rate, concurrency, quota reservations), the store that holds usage for every replica (usage), and
the operator's command line (cli: `stt-license`)."""
