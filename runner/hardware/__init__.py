"""The machine's side of a run: the time series sources that the sampler reads during a
run (CPU load, temperatures, clocks and power from /proc, sysfs and NVML: runner.hardware.cpu,
runner.hardware.gpu), the sampler and what it finds in the windows, the probe of the
machine's limits, and the run placed on the roofline against them."""
