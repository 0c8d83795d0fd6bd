"""Ids of the special tokens, fixed in every vocabulary s2s trains (sentencepiece is told to use them).

They sit below both the tokenizers (s2s.data.subwords) and the model, which pads and starts
and stops decoding with them without knowing how text became ids.
"""

PAD, UNK, BOS, EOS = 0, 1, 2, 3
