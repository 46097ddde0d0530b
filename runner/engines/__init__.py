"""Inference engines other than transformers: vLLM (engine=vllm)."""
