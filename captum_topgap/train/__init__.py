"""Training: loss terms (:mod:`.losses`), objectives of the one loop (:mod:`.objectives`), the loop
(:mod:`.loop`), checkpoints (:mod:`.checkpoints`) and the set-ups that prepare a run (:mod:`.workflows`).
"""
