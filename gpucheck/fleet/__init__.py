"""The fleet: many nodes' reports -> one answer, and the adapters to the cluster's engines.

summary.py    read one report, keep the few figures the fleet compares
aggregate.py  the fleet report (pure): nodes, drift, outliers, missing, unreadable
render.py     rich | JSON | markdown | JUnit
cli.py        `gpucheck fleet` (report files, or `--srun` over an allocation)
task.py       what each node runs under `--srun`
hostlist.py   Slurm hostlist expansion (pure)
slurm.py      `check --drain-on-error`, the nodes of a job (scontrol)
prometheus.py `--prometheus FILE`: node_exporter textfile metrics
hooks.py      what `check`/`probe` do after the report: Prometheus file, drain
"""
