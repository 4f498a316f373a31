"""Benchmarks of built engines: the run (``run``) over runners (``runners``) timed by the loop (``loop``),
machine probes (``probes``), pure statistics (``stats``), FLOP counts (``flops``), result rows (``rows``) and
their rendering (``report``)."""
