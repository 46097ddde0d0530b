"""Search: the objectives a job returns to Hydra's sweeper, constraints on result metrics,
the Pareto front, and the Optuna sweeper that stores its study in the sweep directory."""
