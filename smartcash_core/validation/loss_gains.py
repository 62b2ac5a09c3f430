"""Which loss gains the optional validation loss uses: the checkpoint's own, else documented defaults.

YOLOv5's training-time validation loss uses ``model.hyp``: the hyperparameter file's gains (scratch-low,
-med, -high, or evolved) scaled by ``train.py`` for the level count, the class count and the *training*
image size, plus its label smoothing and focal-loss gamma. Recomputing the gains from scratch-low at the
validation size gives another number whenever the run used other hyperparameters or is validated at
another size (at 640 the ``obj`` term of a 320-trained checkpoint is 4x what training reported).

Order: the checkpoint's gains (YOLOv5 ``.pt``: ``model.hyp``/``ema.hyp``, else ``opt.hyp``, both already
scaled; native: metadata ``loss_hyp``, written by ``smartcash train-demo`` and ``smartcash convert``); else
``hyp.scratch-low`` (box 0.05, obj 1.0, cls 0.5, anchor_t 4.0, no label smoothing, no focal loss) scaled
as ``train.py`` scales it, for the checkpoint's training image size, with a ``loss_gains_default`` warning.
``metrics.loss.gains`` says which were used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from smartcash_core.checkpoint.metadata import loss_hyp_from
from smartcash_core.training.loss import LossHyp
from smartcash_core.validation.params import ValidationWarning

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel

_BALANCE_3_LEVELS = (4.0, 1.0, 0.4)  # YOLOv5 ComputeLoss: P3-P5
_BALANCE_OTHER = (4.0, 1.0, 0.25, 0.06, 0.02)  # YOLOv5 ComputeLoss: any other level count


@dataclass(frozen=True)
class LossGains:
    """Scaled gains ready for ``YoloLoss``; ``source`` is ``checkpoint`` or ``default``, ``origin`` where."""

    hyp: LossHyp
    source: str
    origin: str

    def to_dict(self) -> dict[str, Any]:
        values = {key: value for key, value in asdict(self.hyp).items() if key != "balance"}
        return {"source": self.source, "from": self.origin, **values}


def loss_gains(model: LoadedModel) -> tuple[LossGains, ValidationWarning | None]:
    """The gains for ``model``'s validation loss and, when they are the defaults, a warning saying so."""
    detect = model.model.model[-1]
    levels, classes = int(detect.anchors.shape[0]), int(detect.nc)
    balance = _BALANCE_3_LEVELS if levels == 3 else _BALANCE_OTHER[:levels]
    stored = loss_hyp_from(model.metadata.get("loss_hyp"))
    if stored is not None:
        origin = str(model.metadata.get("loss_hyp_from") or "metadata loss_hyp")
        return LossGains(replace(LossHyp(**stored), balance=balance), "checkpoint", origin), None
    hyp = replace(LossHyp(), balance=balance).scaled(levels, classes, model.imgsz)
    origin = f"hyp.scratch-low scaled for imgsz {model.imgsz}, {levels} levels, {classes} classes"
    message = (
        f"the checkpoint records no loss gains: metrics.loss uses YOLOv5's {origin} (the checkpoint's "
        "training size); it matches the loss training reported only for runs trained with those "
        "hyperparameters"
    )
    return LossGains(hyp, "default", origin), ValidationWarning("loss_gains_default", message)
