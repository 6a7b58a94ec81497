"""The whole node: every GPU at once, the interconnect, and multi-GPU runs through torchrun.

    measure.py (+ _node_child.py, topology.py, sysfs.py)  ->  NodeFigures  ->  judge.py (pure)
    launch.py (torchrun, status files, sweep)  ->  LaunchOutcome  ->  outcome.py (pure)

Finding ids GC601-GC614 (interconnect, judge.py) and GC620-GC623 (distributed runs,
outcome.py); docs/node.md, docs/findings.md. Nothing here imports torch: the children do.
"""

from gpucheck.diagnose import declare

declare(*(f"GC6{n:02d}" for n in range(1, 15)), where="gpucheck.node.judge")
declare("GC620", "GC621", "GC622", "GC623", where="gpucheck.node.outcome")
