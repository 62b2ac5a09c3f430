"""YOLOv5's building blocks (``models/common.py`` and the ``Detect`` head of ``models/yolo.py``), with
YOLOv5's module and attribute names so that ``state_dict`` keys match, plus the decode grids (cached in the
project's ``tensor`` cache, reported by ``get_cache_info()``) and conv + BatchNorm fusion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from smartcash_core.cache import tensor_cache

# YOLOv5's BatchNorm settings (utils/torch_utils.initialize_weights); weights trained there assume them.
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


# --------------------------------------------------------------------------------------------------
# Decode grids, cached in the project's ``tensor`` cache (reported by ``get_cache_info()``)
# --------------------------------------------------------------------------------------------------
def decode_grid(ny: int, nx: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Cell offsets minus 0.5, ``[1, 1, ny, nx, 2]`` holding (x, y), like YOLOv5's ``_make_grid``.

    A grid depends only on the feature-map shape, device and dtype, so one cached grid serves every model.
    """
    key = ("detect_grid", ny, nx, str(device), dtype)
    return tensor_cache().get_or_create(key, lambda: _make_grid(ny, nx, device, dtype))


def _make_grid(ny: int, nx: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    ys = torch.arange(ny, device=device, dtype=dtype)
    xs = torch.arange(nx, device=device, dtype=dtype)
    yv, xv = torch.meshgrid(ys, xs, indexing="ij")
    return (torch.stack((xv, yv), 2) - 0.5).view(1, 1, ny, nx, 2)


# --------------------------------------------------------------------------------------------------
# Building blocks (names and attributes exactly as in YOLOv5 models/common.py)
# --------------------------------------------------------------------------------------------------
def autopad(kernel: int, padding: int | None = None) -> int:
    """'Same' padding for odd kernels when no explicit padding is given."""
    return kernel // 2 if padding is None else padding


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + SiLU. After :meth:`fuse_bn` the BN is folded into the conv."""

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn: nn.BatchNorm2d | None = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act: nn.Module = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        return self.act(y)

    def fuse_bn(self) -> None:
        """Fold the BatchNorm (eval statistics) into the conv weight and a new bias."""
        if self.bn is None:
            return
        self.conv = fuse_conv_and_bn(self.conv, self.bn)
        self.bn = None


class Bottleneck(nn.Module):
    """1x1 conv, 3x3 conv, optional residual when input and output widths match."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions."""

    def __init__(
        self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5
    ) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained max-pools concatenated with their input."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    """Concatenate a list of tensors along ``d`` (channels)."""

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class Detect(nn.Module):
    """YOLOv5 detection head: a 1x1 conv per level, ``na`` anchors per cell, ``5 + nc`` outputs per anchor.

    ``anchors`` (buffer ``[nl, na, 2]``) is in grid units (pixels divided by the level's stride), as in
    YOLOv5. ``stride`` (``[nl]``) is set by :class:`DetectionModel` after a dry forward.
    """

    def __init__(self, nc: int, anchors: Sequence[Sequence[float]], ch: Sequence[int]) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.stride = torch.ones(self.nl)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def forward(
        self, x: list[torch.Tensor]
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Train mode: raw ``[B, na, h, w, 5+nc]`` per level. Eval: ``(decoded [B, N, 5+nc], raw list)``."""
        raw: list[torch.Tensor] = []
        decoded: list[torch.Tensor] = []
        for level, conv in enumerate(self.m):
            y = conv(x[level])
            batch, _, ny, nx = y.shape
            y = y.view(batch, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            raw.append(y)
            if not self.training:
                decoded.append(self._decode(y, level).view(batch, self.na * ny * nx, self.no))
        return raw if self.training else (torch.cat(decoded, 1), raw)

    def _decode(self, y: torch.Tensor, level: int) -> torch.Tensor:
        """Raw ``[B, na, h, w, no]`` -> sigmoid + xywh in input pixels (same op order as YOLOv5)."""
        _, _, ny, nx, _ = y.shape
        grid = decode_grid(ny, nx, y.device, y.dtype)
        stride = self.stride[level].to(device=y.device, dtype=y.dtype)
        anchor_grid = (self.anchors[level] * stride).view(1, self.na, 1, 1, 2).to(y.dtype)
        xy, wh, conf = y.sigmoid().split((2, 2, self.nc + 1), 4)
        xy = (xy * 2 + grid) * stride
        wh = (wh * 2) ** 2 * anchor_grid
        return torch.cat((xy, wh, conf), 4)

    def _apply(self, fn: Any, recurse: bool = True) -> Detect:
        # Keep the plain-attribute stride on the same device as the buffers (YOLOv5 does the same).
        super()._apply(fn, recurse)
        self.stride = fn(self.stride)
        return self


@torch.no_grad()  # the fused weights are plain leaf tensors, whatever grad mode the caller is in
def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias computing ``bn(conv(x))`` with BN's running statistics."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True,
    ).requires_grad_(False).to(conv.weight.device)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bn.bias + (conv_bias - bn.running_mean) * scale)
    return fused
