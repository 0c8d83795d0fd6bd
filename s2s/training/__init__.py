"""Training a model: the loop and its step, loss, optimizer and schedule, checkpoints, stopping, reporting, ranks."""
