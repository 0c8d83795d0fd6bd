"""Corpora, subword vocabularies, batching, and the embedded dates task: everything from text files
to padded id tensors."""
