"""The columns of the context-use tables (:mod:`.context_use`): a module of its own, so that the job reading the text
again and the code reading its table back (:mod:`.context_use_summary`) share them, and an edit of the reader reruns
no model."""
VARIANTS = ("truncated", "shuffled")
# words: "all", or the class of the word predicted (lstmscope.cluster_measures.WORD_CLASSES)
COLUMNS = ["model", "text", "dropout", "words", "variant", "length", "longest", "positions", "loss", "stream_loss",
           "increase", "increase_se"]
NUMBERS = ["dropout", "length", "longest", "positions", "loss", "stream_loss", "increase", "increase_se"]
