"""Typed sections of a run's result: frozen dataclasses with one ``to_dict``/``from_dict``.

:mod:`~runner.sections.metrics` (statistics of one quantity, latency, throughput,
memory) and :mod:`~runner.sections.energy` make up ``result.json`` next to
:class:`runner.results.RunResult`; :mod:`~runner.sections.requests` is the per-request
table. Writers (``runner.measure``, ``runner.run``), readers (``runner.report``,
``runner.summary``) and the tests all use them. No torch here: the report imports them.
"""
