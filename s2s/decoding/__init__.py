"""Turning a trained model into translations: greedy, beam and sampling search, reranking, and the Translator."""
