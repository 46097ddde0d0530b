"""What the runner asks of Slurm and records about it.

- :mod:`runner.slurm.scontrol`: Slurm's own commands, run and parsed (the only I/O here).
- :mod:`runner.slurm.request`: a launcher's request checked against the partition's nodes
  before anything is submitted.
- :mod:`runner.slurm.share`: whether a job had its node to itself (recorded with the result;
  CPU/RAM energy is machine-wide, so it is marked as shared where the node was).
- :mod:`runner.slurm.stops`: what a stop signal or a scheduler state means for a job
  (preemption, time limit, cancellation) in words a user can act on.
"""
