"""Quantized storage: reading, exact dequantization and writing (GGUF blocks, scaled fp8, NF4)."""
