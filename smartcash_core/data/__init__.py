"""Data: dataset discovery (``discovery``: every file a dataset job touches; ``data_yaml``: reading
``data.yaml`` safely), YOLO datasets (``dataset``; label files: ``labels``), safety caps (``limits``),
the image reader (``images``: probe, and decode + EXIF + resize with OpenCV, as YOLOv5), the
letterbox geometry (``letterbox``) and the batch loader (``loader``). Import from the submodules; nothing
is re-exported here so that importing one piece stays cheap."""
