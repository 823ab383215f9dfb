"""Evaluation: accuracy and heat-map measures (:mod:`.metrics`, :mod:`.heatmaps`), robustness under attacks
(:mod:`.robustness`) and distribution shift (:mod:`.shift`), the collapse diagnostic of explanation
regularisers (:mod:`.diagnostics`) and claims judged by fixed criteria (:mod:`.claims`).
"""
