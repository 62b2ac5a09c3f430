"""The validation pass, one stage a module (import from the modules; this package imports nothing):

- ``params``: the contract: ``ValidationParams``, ``ValidationResult``, ``UploadedSample`` (no torch).
- ``source``: read: a dataset directory or an upload as a checked index, its batches, the processing order.
  (decode + letterbox: ``smartcash_core.data.loader.BatchLoader``, fed with those batches.)
- ``inference``: forward: the fused network, channels-last inputs, one forward call per batch.
- ``detections``: NMS, then detections in original pixels beside the ground truth (``ProcessedBatch``).
- ``accumulators/``: match and accumulate: evaluator, class counts, loss, denominations, per-image rows,
  one interface (``accumulators.base.Accumulator``).
- ``runner``: ``run_validation``: the batch loop, ``ValidationState``, ``build_result``.
- ``summary``, ``denomination``, ``loss``: what the accumulators compute their results with.
- ``report`` (text tables, ``--json``), ``plots`` (PNG curves and matrices).
- ``distributed`` (torchrun plumbing), ``distributed_pass`` (the pass over ranks, merged on rank 0).
"""
