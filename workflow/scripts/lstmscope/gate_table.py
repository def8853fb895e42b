"""The columns of the gate tables (:mod:`.gates`): a module of its own, so that the job computing the gates and the
code reading them back (:mod:`.gate_summary`) share them, and an edit of the reader reruns no gate computation."""
GATES = ("input", "forget", "cell", "output")
STATISTICS = ("mean", "left", "right")
SHARES = [f"{g}_{s}" for g in GATES for s in ("left", "right")]
COLUMNS = (["model", "text", "dropout", "saturation", "layer", "neuron"]
           + [f"{g}_{s}" for g in GATES for s in STATISTICS] + ["forget_timescale"])
