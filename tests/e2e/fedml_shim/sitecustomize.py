"""Test-only: lets `import fedml` work beside the CPU torch 2.13.0 that CI installs.

fedml 0.9.6 imports torchvision at import time. PyPI's torchvision 0.28.0 is built against CUDA torch: its
`_C` extension fails to load beside the CPU build, so the two operators torchvision's Python code looks up
unconditionally (`nms`, `qnms`) are never defined and the import raises `operator torchvision::nms does not
exist`. Defining their schemas (no kernels: the app never calls them) is enough. User images avoid this by
installing the matching CPU pair from download.pytorch.org/whl/cpu (see the README).
"""

import torch

_TORCHVISION = torch.library.Library("torchvision", "DEF")
_TORCHVISION.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_TORCHVISION.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
