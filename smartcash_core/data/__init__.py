"""Data: YOLO datasets (``dataset``), YOLOv5 image geometry (``letterbox``) and the batch loader
(``loader``). Import from the submodules; nothing is re-exported here so that importing one piece stays
cheap."""
