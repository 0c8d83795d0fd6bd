"""Training a model: the loop and its step, loss, optimizer and schedule, checkpointing, stopping, reporting, distribution."""
