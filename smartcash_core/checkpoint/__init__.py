"""Checkpoints: the native safetensors format and the safe importer for classic YOLOv5 ``.pt`` files.

CONTRACT (issue 2 / issue 6):
- ``LoadedModel``: a model ready for inference plus what the checkpoint says about it.
- ``load_model(path, device="auto") -> LoadedModel`` picks the loader by content (safetensors or a
  YOLOv5 pickle) and raises ``CheckpointError`` naming the file and the reason.
"""
