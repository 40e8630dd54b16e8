"""Local Ray clusters on 127.0.0.1 under change: two nodes with one stopped (`multinode`), faults and
upgrades under load (`resilience`), overload for minutes (`soak`), autoscaling shown (`autoscale`)."""
