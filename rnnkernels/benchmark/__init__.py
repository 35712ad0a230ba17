"""``python -m rnnkernels.benchmark``: the Fused modules side by side with torch.nn."""
