"""What the pass accumulates, batch by batch, behind one interface (:mod:`.base`).

One module each: :mod:`.evaluator` (the mAP metric state), :mod:`.counts` (ground truth per class),
:mod:`.loss` (YOLOv5's validation loss), :mod:`.denominations` (image-level denomination decisions) and
:mod:`.per_image` (the per-image rows). :mod:`.standard` lists them in the order their results are built.
"""
