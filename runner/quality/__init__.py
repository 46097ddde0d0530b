"""Quality beside cost: what a run's settings do to the model's output.

- :mod:`~runner.quality.text`: the evaluation text (built-in, or the user's file);
- :mod:`~runner.quality.perplexity`: teacher-forced perplexity on it, with the loaded model;
- :mod:`~runner.quality.outputs`: every measured request's output token ids
  (``outputs.parquet``) and the workload fingerprint that says two runs are comparable;
- :mod:`~runner.quality.agreement`: one run's outputs against a reference run's;
- :mod:`~runner.quality.lmeval`: lm-evaluation-harness tasks on the loaded model;
- :mod:`~runner.quality.phase`: the run's quality phase, which ties them together.

Everything here runs after the timed and energy windows; nothing here is timed with them.
"""
