"""The phases of one run (runner.run): state, machine preparation, warmup, the measured
passes, serving under load, and the vLLM flow."""
