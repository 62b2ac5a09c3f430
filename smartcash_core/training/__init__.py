"""Training: the demo trainer (``train``), YOLOv5's detection loss (``loss``, also behind the optional
validation loss) and the synthetic banknote scenes it trains and tests on (``synthetic``). Import from the
submodules; nothing is re-exported here so that importing one piece stays cheap."""
