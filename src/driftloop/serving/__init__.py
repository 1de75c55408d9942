"""The model server: ONNX only, several protocols, hot reload, metrics and a prediction log."""
