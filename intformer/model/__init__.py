"""The model path: a BERT-family encoder imported, quantized integer-only and run on the golden models."""
