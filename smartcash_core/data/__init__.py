"""Data: YOLO datasets (``dataset``), YOLOv5 image geometry (``letterbox``), the batch loader (``loader``)
and the synthetic banknote generator (``synthetic``). Import from the submodules; nothing is re-exported
here so that importing one piece stays cheap."""
