"""The encoder-decoder model: encoder, attention, decoder and the module that ties them."""
