"""What users run: the ``captum-topgap`` command line (:mod:`.cli`), the demo and its report, the sweep,
the benchmark, ``explain`` and ``visualize``, and the figures they draw (:mod:`.plots`).
"""
