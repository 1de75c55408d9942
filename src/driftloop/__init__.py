"""driftloop: a self-hostable closed MLOps loop (data → model → ONNX → registry → serving → drift → retrain)."""

__version__ = "0.1.0"
