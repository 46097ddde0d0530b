"""Hydra launcher plugins of llm-sweep-runner (Hydra finds plugins under ``hydra_plugins``)."""
