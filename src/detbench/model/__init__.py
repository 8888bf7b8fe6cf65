"""Model stage: checkpoint loading, the training wrapper, the committed baseline."""
